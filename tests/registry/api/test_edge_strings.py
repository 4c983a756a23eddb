"""Strings at the edge: NUL anywhere (PostgreSQL cannot store it) and control characters in stored names get
400 on both databases; artifact names with quotes or non-ASCII download with an RFC 6266/5987 header that
parses back to the exact name."""

from __future__ import annotations

import email.message
import re
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from tests.conftest import unique

MLFLOW = "/api/2.0/mlflow"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def run_id(app_client: httpx.AsyncClient) -> str:
    return str((await app_client.post("/api/v1/runs", json={"name": "strings"})).json()["id"])


def _fill(value: Any, run: str) -> Any:
    if isinstance(value, str):
        return value.replace("{run}", run)
    if isinstance(value, dict):
        return {_fill(k, run): _fill(v, run) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, run) for v in value]
    return value


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    if response.request.url.path.startswith("/api/2.0/"):
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "out of range for the registry" not in response.json()["message"], "refused by the database"
    else:
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["code"] != "value_out_of_range", "refused by the database, not at the edge"


NUL_CASES: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/models/a%00b", None),
    ("GET", "/api/v1/events?model=a%00b", None),
    ("GET", "/api/v1/events?type=%00", None),
    ("GET", "/api/v1/runs/{run}/metrics/a%00b", None),
    ("GET", f"{MLFLOW}/registered-models/get?name=a%00b", None),
    ("GET", f"{MLFLOW}/experiments/get-by-name?experiment_name=a%00b", None),
    ("GET", f"{MLFLOW}/runs/get?run_id=a%00b", None),
    ("POST", "/api/v1/experiments", {"name": "a\x00b"}),
    ("POST", "/api/v1/models", {"name": "nul-desc", "description": "a\x00b"}),
    ("POST", "/api/v1/runs", {"environment": {"python": "3\x00"}}),
    ("POST", "/api/v1/runs/{run}/log-batch", {"params": {"p": "a\x00b"}}),
    ("POST", "/api/v1/runs/{run}/log-batch", {"tags": {"t": "\x00"}}),
    ("POST", f"{MLFLOW}/experiments/create", {"name": "a\x00b"}),
    ("POST", f"{MLFLOW}/runs/set-tag", {"run_id": "{run}", "key": "k", "value": "a\x00b"}),
    ("POST", f"{MLFLOW}/runs/log-parameter", {"run_id": "{run}", "key": "k", "value": "\x00"}),
]


@pytest.mark.parametrize(("method", "path", "body"), NUL_CASES)
async def test_nul_is_refused_everywhere(
    app_client: httpx.AsyncClient, run_id: str, method: str, path: str, body: Any
) -> None:
    url = _fill(path, run_id)
    response = await app_client.request(method, url, json=_fill(body, run_id) if body is not None else None)
    _assert_refused(response)


async def test_backslash_u0000_as_text_is_kept(app_client: httpx.AsyncClient) -> None:
    name = unique("exp") + "\\u0000"  # the six characters, escaped in JSON as \\u0000
    created = await app_client.post("/api/v1/experiments", json={"name": name})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == name


CONTROL_CASES: list[tuple[str, str, Any]] = [
    ("PUT", "/api/v1/runs/{run}/artifacts/ctl/%01x", b"x"),
    ("PUT", "/api/v1/runs/{run}/artifacts/a%0Db", b"x"),
    ("PUT", "/api/v1/runs/{run}/artifacts/a%0Ab", b"x"),
    ("PUT", "/api/v1/runs/{run}/artifacts/a%7Fb", b"x"),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/{run}/artifacts/a%0Db", b"x"),
    ("POST", "/api/v1/experiments", {"name": "a\nb"}),
    ("POST", "/api/v1/experiments", {"name": "bell\x07"}),
    ("POST", "/api/v1/experiments", {"name": unique("e"), "tags": {"k\n": "v"}}),
    ("POST", "/api/v1/runs", {"name": "a\rb"}),
    ("POST", "/api/v1/runs", {"user": "eve\x1b[31m"}),
    ("PATCH", "/api/v1/runs/{run}", {"name": "tab\there"}),
    ("POST", "/api/v1/runs/{run}/log-batch", {"tags": {"key\n": "v"}}),
    ("POST", "/api/v1/runs/{run}/log-batch", {"params": {"p\n": "v"}}),
    ("POST", "/api/v1/artifacts", {"name": unique("ds"), "files": [{"path": "a\x01b", "sha256": "0" * 64, "size": 1}]}),
    ("POST", "/api/v1/tokens", {"name": "tok\nen"}),
    ("POST", "/api/v1/runs/{run}/inputs", {"artifact": "any", "version": 1, "context": "x" * 65}),
    ("POST", f"{MLFLOW}/experiments/create", {"name": "a\x7fb"}),
    ("POST", f"{MLFLOW}/runs/create", {"experiment_id": "0", "run_name": "a\nb"}),
    ("POST", f"{MLFLOW}/runs/set-tag", {"run_id": "{run}", "key": "mlflow.runName", "value": "a\nb"}),
]


@pytest.mark.parametrize(("method", "path", "body"), CONTROL_CASES)
async def test_control_characters_in_stored_names_are_refused(
    app_client: httpx.AsyncClient, run_id: str, method: str, path: str, body: Any
) -> None:
    url = _fill(path, run_id)
    if isinstance(body, bytes):
        response = await app_client.request(method, url, content=body)
    else:
        response = await app_client.request(method, url, json=_fill(body, run_id))
    _assert_refused(response)
    listing = (await app_client.get(f"/api/v1/runs/{run_id}/artifacts")).json()
    assert all(not any(ord(c) < 32 or c == "\x7f" for c in f["path"]) for f in listing)


def _filename(header: str) -> str | None:
    """The file name an RFC 6266 client reads: ``filename*`` (RFC 5987) when present, else ``filename``."""
    extended = re.search(r"filename\*=UTF-8''([^;\s]+)", header, flags=re.IGNORECASE)
    if extended:
        return unquote(extended.group(1), encoding="utf-8", errors="strict")
    message = email.message.Message()
    message["content-disposition"] = header
    return message.get_filename()


@pytest.mark.parametrize("name", ['a"; x=y', "résumé €.txt", "per%25cent;=.bin", "a b'c"])
async def test_downloads_name_the_file_exactly(app_client: httpx.AsyncClient, run_id: str, name: str) -> None:
    path = f"q/{name}"
    up = await app_client.put(f"/api/v1/runs/{run_id}/artifacts/{quote(path)}", content=b"data")
    assert up.status_code == 201, up.text
    assert up.json()["path"] == path
    down = await app_client.get(f"/api/v1/runs/{run_id}/artifacts/{quote(path)}")
    assert down.status_code == 200 and down.content == b"data"
    header = down.headers["content-disposition"]
    header.encode("ascii")  # a header value is ASCII; the name travels percent-encoded in filename*
    assert _filename(header) == name
    message = email.message.Message()
    message["content-disposition"] = header
    params = message.get_params(header="content-disposition")
    assert params is not None and params[0] == ("attachment", "")
    assert {k for k, _ in params[1:]} == {"filename"}, header  # filename and filename*, nothing injected
    fallback = [v for k, v in params[1:] if isinstance(v, str)]
    assert fallback == ["".join(c if " " <= c < "\x7f" else "_" for c in name)]
    # The MLflow face serves the same file the same way.
    experiment = (await app_client.get(f"/api/v1/runs/{run_id}")).json()["experiment_id"]
    mlflow = await app_client.get(f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/{quote(path)}")
    assert mlflow.status_code == 200 and _filename(mlflow.headers["content-disposition"]) == name
