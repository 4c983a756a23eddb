"""The versions list shows each version's real aliases and its file count; integer ids and cursors out of the
BIGINT range are 404 (ids) or 400 (bodies, cursors), never a driver overflow."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from registry.cli import main
from tests.conftest import LiveServer, Tokens, bearer, unique

BEYOND = 2**63  # one past the largest BIGINT


async def _model(client: httpx.AsyncClient, files_per_version: list[int]) -> str:
    name = unique("list")
    assert (await client.post("/api/v1/models", json={"name": name})).status_code == 201
    for n, count in enumerate(files_per_version):
        run = (await client.post("/api/v1/runs", json={})).json()
        for i in range(count):
            await client.put(f"/api/v1/runs/{run['id']}/artifacts/model/f{i}.bin", content=f"{name}-{n}-{i}".encode())
        made = await client.post(f"/api/v1/models/{name}/versions", json={"run_id": run["id"], "path": "model"})
        assert made.status_code == 201, made.text
    return name


async def test_list_shows_each_versions_aliases_and_file_count(app_client: httpx.AsyncClient) -> None:
    name = await _model(app_client, [1, 3, 2])
    for alias, version in (("production", 2), ("staging", 2), ("canary", 3)):
        moved = await app_client.put(f"/api/v1/models/{name}/aliases/{alias}", json={"version": version})
        assert moved.status_code == 200, moved.text
    page = (await app_client.get(f"/api/v1/models/{name}/versions")).json()
    items = page["items"]
    assert [(v["version"], v["aliases"], v["file_count"]) for v in items] == [
        (1, [], 1),
        (2, ["production", "staging"], 3),
        (3, ["canary"], 2),
    ]
    assert all("files" not in v for v in items)  # a list stays cheap: files are on the version itself
    newest = (await app_client.get(f"/api/v1/models/{name}/versions", params={"order": "desc", "limit": 2})).json()
    assert [(v["version"], v["aliases"]) for v in newest["items"]] == [(3, ["canary"]), (2, ["production", "staging"])]


def test_cli_versions_list_json_has_the_aliases(
    live_server: LiveServer, api_tokens: Tokens, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique("cli-list")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a")
    (folder / "b.bin").write_bytes(b"b")
    cli = ["--url", live_server.url, "--token", api_tokens.maintainer]
    assert main(["push", name, str(folder), *cli]) == 0
    assert main(["promote", name, "1", "--to", "production", *cli]) == 0
    capsys.readouterr()
    assert main(["versions", "list", name, "--json", *cli]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["aliases"], v["file_count"]) for v in listed] == [(1, ["production"], 2)]


async def test_ids_beyond_bigint_are_404_and_bodies_400(app_client: httpx.AsyncClient, api_tokens: Tokens) -> None:
    name = await _model(app_client, [1])
    for method, path in (
        ("GET", f"/api/v1/models/{name}/versions/{BEYOND}"),
        ("DELETE", f"/api/v1/models/{name}/versions/{BEYOND}"),
        ("GET", f"/api/v1/models/{name}/versions/-{BEYOND + 1}"),
        ("GET", f"/api/v1/models/{name}/versions/{BEYOND}/gate-runs"),
        ("GET", f"/api/v1/gate-runs/{BEYOND}"),
        ("GET", f"/api/v1/gate-runs/{10**30}"),
    ):
        answer = await app_client.request(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    run = await app_client.post(
        f"/api/v1/models/{name}/versions/{BEYOND}/gate-runs", json={"spec": "version: 1\ngates: []\n"}
    )
    assert run.status_code in (400, 404), run.text
    for body in ({"version": BEYOND}, {"version": 1, "expect": BEYOND}, {"version": -BEYOND - 1}):
        answer = await app_client.put(f"/api/v1/models/{name}/aliases/staging", json=body)
        assert answer.status_code == 400, (body, answer.text)
    for params in ({"after": str(BEYOND)}, {"after": str(BEYOND), "order": "desc"}):
        answer = await app_client.get(f"/api/v1/models/{name}/versions", params=params)
        assert answer.status_code == 400, (params, answer.text)
    # Nothing moved on the way.
    assert (await app_client.get(f"/api/v1/models/{name}", headers=bearer(api_tokens.reader))).json()["aliases"] == []
