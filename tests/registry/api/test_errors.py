"""Bad input gets a clear 4xx problem+json, and nothing is stored."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.conftest import Tokens, bearer, unique

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["detail"] and body["title"]
    if code:
        assert body["code"] == code, body
    assert "Traceback" not in response.text and "sqlalchemy" not in response.text.lower()
    return dict(body)


async def _run(client: httpx.AsyncClient) -> str:
    response = await client.post("/api/v1/runs", json={})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_health_needs_no_token_but_the_api_does(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/health", headers={"authorization": ""})).json()["status"] == "ok"
    missing = await app_client.get("/api/v1/models", headers={"authorization": ""})
    assert_problem(missing, 401, "unauthenticated")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert_problem(await app_client.get("/api/v1/models", headers=bearer("mk_abc_def")), 401)
    assert_problem(await app_client.get("/api/v1/models", headers={"authorization": "Basic eDp5"}), 401)


async def test_readers_cannot_write(app_client: httpx.AsyncClient, api_tokens: Tokens) -> None:
    name = unique()
    as_reader = bearer(api_tokens.reader)
    assert (await app_client.get("/api/v1/models", headers=as_reader)).status_code == 200
    body = assert_problem(await app_client.post("/api/v1/models", json={"name": name}, headers=as_reader), 403)
    assert "writer" in str(body["detail"])
    assert_problem(await app_client.get(f"/api/v1/models/{name}"), 404, "not_found")
    assert_problem(await app_client.get("/api/v1/tokens", headers=bearer(api_tokens.writer)), 403)


async def test_malformed_json_and_wrong_types(app_client: httpx.AsyncClient) -> None:
    bad_json = await app_client.post(
        "/api/v1/models", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(bad_json, 400, "invalid_input")
    wrong_type = await app_client.post("/api/v1/models", json={"name": 42})
    assert_problem(wrong_type, 400, "invalid_input")
    unknown = await app_client.post("/api/v1/models", json={"name": unique(), "colour": "red"})
    assert_problem(unknown, 400)
    run_id = await _run(app_client)
    metrics = await app_client.post(f"/api/v1/runs/{run_id}/log-batch", json={"metrics": [{"key": "x", "value": "hi"}]})
    assert_problem(metrics, 400)
    assert (await app_client.get(f"/api/v1/runs/{run_id}")).json()["metrics"] == []


async def test_not_found_everywhere(app_client: httpx.AsyncClient) -> None:
    assert_problem(await app_client.get("/api/v1/models/nope"), 404)
    assert_problem(await app_client.get("/api/v1/runs/" + "0" * 32), 404)
    assert_problem(await app_client.post("/api/v1/models/nope/versions", json={"run_id": "0" * 32}), 404)
    name = unique()
    await app_client.post("/api/v1/models", json={"name": name})
    assert_problem(await app_client.get(f"/api/v1/models/{name}/versions/7"), 404)
    assert_problem(await app_client.get(f"/api/v1/models/{name}/aliases/staging"), 404)
    assert_problem(await app_client.put(f"/api/v1/models/{name}/aliases/staging", json={"version": 7}), 404)
    assert_problem(await app_client.get("/api/v1/no/such/route"), 404)


async def test_duplicate_model_is_409_and_invalid_names_400(app_client: httpx.AsyncClient) -> None:
    name = unique()
    assert (await app_client.post("/api/v1/models", json={"name": name})).status_code == 201
    assert_problem(await app_client.post("/api/v1/models", json={"name": name}), 409, "already_exists")
    for bad in ("", "a/b", "x@y", " lead", "a" * 300):
        assert_problem(await app_client.post("/api/v1/models", json={"name": bad}), 400)


async def test_invalid_alias_names(app_client: httpx.AsyncClient) -> None:
    name = unique()
    await app_client.post("/api/v1/models", json={"name": name})
    run_id = await _run(app_client)
    await app_client.put(f"/api/v1/runs/{run_id}/artifacts/m.bin", content=b"weights")
    await app_client.post(f"/api/v1/models/{name}/versions", json={"run_id": run_id, "path": "m.bin"})
    for bad in ("latest", "v2", "9lives", "bad%20space", "a.b"):
        assert_problem(await app_client.put(f"/api/v1/models/{name}/aliases/{bad}", json={"version": 1}), 400)
    assert (await app_client.get(f"/api/v1/models/{name}")).json()["aliases"] == []


@pytest.mark.parametrize("path", ["../etc/passwd", "a/../../b", "%2Fabs", "back%5Cslash", "nul%00byte", "C:/x"])
async def test_bad_artifact_paths_are_rejected(app_client: httpx.AsyncClient, path: str) -> None:
    run_id = await _run(app_client)
    response = await app_client.put(f"/api/v1/runs/{run_id}/artifacts/{path}", content=b"data")
    assert response.status_code in (400, 404), response.text
    if response.status_code == 400:
        assert_problem(response, 400)
    assert (await app_client.get(f"/api/v1/runs/{run_id}/artifacts")).json() == []


async def test_oversize_json_body_is_413(app_client: httpx.AsyncClient) -> None:
    big = b'{"name": "' + b"x" * (33 * 1024 * 1024) + b'"}'
    response = await app_client.post("/api/v1/models", content=big, headers={"content-type": "application/json"})
    assert_problem(response, 413, "payload_too_large")


async def test_blob_upload_verifies_its_digest(app_client: httpx.AsyncClient) -> None:
    data = b"some model bytes"
    wrong = hashlib.sha256(b"other").hexdigest()
    assert_problem(await app_client.put(f"/api/v1/blobs/{wrong}", content=data), 400)
    assert (await app_client.head(f"/api/v1/blobs/{wrong}")).status_code == 404
    assert_problem(await app_client.put("/api/v1/blobs/not-a-digest", content=data), 400)
    right = hashlib.sha256(data).hexdigest()
    assert (await app_client.put(f"/api/v1/blobs/{right}", content=data)).status_code == 201
    assert (await app_client.get(f"/api/v1/blobs/{right}")).content == data


async def test_version_with_unuploaded_blob_stores_nothing(app_client: httpx.AsyncClient) -> None:
    name = unique()
    await app_client.post("/api/v1/models", json={"name": name})
    files = [{"path": "w.bin", "sha256": "b" * 64, "size": 1}]
    assert_problem(await app_client.post(f"/api/v1/models/{name}/versions", json={"files": files}), 400)
    model = (await app_client.get(f"/api/v1/models/{name}")).json()
    assert model["latest_version"] == 0
