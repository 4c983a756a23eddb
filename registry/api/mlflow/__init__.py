"""The MLflow-compatible face: ``/api/2.0/mlflow``, ``/api/2.0/mlflow-artifacts``, ``/api/3.0/mlflow``.

An unmodified MLflow client (``MLFLOW_TRACKING_URI=http://host:port``, ``MLFLOW_TRACKING_TOKEN=<token>``)
logs, registers and promotes through these routes; they call the same services as ``/api/v1``.
"""

from __future__ import annotations

from typing import Any

from litestar import Router, get

from registry.api.mlflow.artifacts import ArtifactsController
from registry.api.mlflow.registry import RegistryController
from registry.api.mlflow.tracking import TrackingController
from registry.api.security import authenticate

PREFIXES = ("/api/2.0/mlflow", "/api/2.0/mlflow-artifacts", "/api/3.0/mlflow", "/ajax-api/")


@get("/server-info")
async def server_info() -> dict[str, Any]:
    return {
        "store_type": "ModelkeepStore",
        "multipart_uploads_enabled": False,
        "multipart_downloads_enabled": False,
        "workspaces_enabled": False,
    }


def routers() -> list[Router]:
    return [
        Router(
            path="/api/2.0/mlflow",
            guards=[authenticate],
            route_handlers=[TrackingController, RegistryController],
            include_in_schema=False,
        ),
        Router(
            path="/api/2.0/mlflow-artifacts",
            guards=[authenticate],
            route_handlers=[ArtifactsController],
            include_in_schema=False,
        ),
        Router(path="/api/3.0/mlflow", guards=[authenticate], route_handlers=[server_info], include_in_schema=False),
    ]
