"""The OpenAPI schema documents the errors the API really answers: problem+json bodies for 400, 401, 403,
404 and 409 on the operations that can give them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

PROBLEM = "application/problem+json"
WRITES = {"post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
async def schema(app_client: httpx.AsyncClient) -> dict[str, Any]:
    response = await app_client.get("/schema/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete", "head"}
    ]


def _problem_ref(response: dict[str, Any]) -> str | None:
    ref = response.get("content", {}).get(PROBLEM, {}).get("schema", {}).get("$ref")
    return str(ref) if ref is not None else None


async def test_problem_schema_is_a_component(schema: dict[str, Any]) -> None:
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) >= {"type", "title", "status", "detail", "code"}
    assert problem["properties"]["status"]["type"] == "integer"


async def test_every_api_operation_documents_its_errors_as_problem_json(schema: dict[str, Any]) -> None:
    operations = _operations(schema)
    assert len(operations) > 30
    for path, method, op in operations:
        responses = op["responses"]
        where = f"{method.upper()} {path}"
        for status in ("400", "401"):
            assert _problem_ref(responses.get(status, {})) == "#/components/schemas/Problem", where
        if method in WRITES:
            assert {"403", "404", "409"} <= set(responses), where
        if "{" in path:
            assert "404" in responses, where
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert set(response.get("content", {})) == {PROBLEM}, f"{where} {status}"
    assert "WWW-Authenticate" in schema["paths"]["/api/v1/models"]["get"]["responses"]["401"]["headers"]


async def test_403_only_where_a_role_above_reader_is_needed(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    assert "403" not in paths["/api/v1/models"]["get"]["responses"]  # every token may read
    assert "403" in paths["/api/v1/models"]["post"]["responses"]
    assert "403" in paths["/api/v1/audit"]["get"]["responses"]  # admins only
    assert "403" in paths["/api/v1/tokens"]["get"]["responses"]


async def test_a_real_error_matches_the_documented_shape(app_client: httpx.AsyncClient, schema: dict[str, Any]) -> None:
    response = await app_client.get("/api/v1/experiments/987654321")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
    required = schema["components"]["schemas"]["Problem"]["required"]
    assert set(required) <= set(response.json())
