"""A JSON body nested 10,000 levels deep is a malformed request (400), on every face, never a RecursionError."""

from __future__ import annotations

import httpx
import pytest

DEPTH = 10_000
ARRAYS = b"[" * DEPTH + b"]" * DEPTH
UNCLOSED = b"[" * DEPTH
OBJECTS = b'{"a":' * DEPTH + b"1" + b"}" * DEPTH
# Deep inside a field typed as free JSON, where the decoder follows the nesting.
IN_FIELD = b'{"name":"deep","environment":' + OBJECTS + b"}"

ROUTES = [
    "/api/v1/models",
    "/api/v1/runs",
    "/api/v1/experiments",
    "/api/v1/automations/rules",
    "/api/v1/webhooks",
    "/api/2.0/mlflow/registered-models/create",
    "/api/2.0/mlflow/runs/create",
    "/api/2.0/mlflow/runs/log-batch",
]


@pytest.mark.parametrize("body", [ARRAYS, UNCLOSED, OBJECTS, IN_FIELD], ids=["arrays", "unclosed", "objects", "field"])
@pytest.mark.parametrize("route", ROUTES)
async def test_deeply_nested_bodies_are_refused(app_client: httpx.AsyncClient, route: str, body: bytes) -> None:
    response = await app_client.post(route, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    if route.startswith("/api/2.0/"):
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    else:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == 400


async def test_a_deep_page_token_is_refused(app_client: httpx.AsyncClient) -> None:
    import base64

    token = base64.urlsafe_b64encode(OBJECTS).decode()
    response = await app_client.post("/api/2.0/mlflow/experiments/search", json={"page_token": token})
    assert response.status_code == 400, response.text
