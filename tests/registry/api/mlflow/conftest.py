"""The real MLflow client (mlflow-skinny) pointed at a real `registry serve` process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import LiveServer, Tokens


@pytest.fixture
def mlflow_env(live_server: LiveServer, api_tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Environment as a user would set it: tracking URI + token; no retries so failures surface at once."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", live_server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", api_tokens.maintainer)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    mlflow.set_tracking_uri(live_server.url)
    mlflow.set_registry_uri(live_server.url)
    yield live_server.url
    while mlflow.active_run() is not None:
        mlflow.end_run()
