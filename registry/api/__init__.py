"""HTTP faces of the registry: the native REST API (/api/v1) and, later, the MLflow-compatible API."""
