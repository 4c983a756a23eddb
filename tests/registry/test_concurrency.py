"""Concurrency claims, shown with real concurrent clients against a real `registry serve` process."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx

from tests.conftest import LiveServer, Tokens, bearer, unique


def _client(server: LiveServer, token: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    return httpx.AsyncClient(base_url=server.url, headers=bearer(token), limits=limits, timeout=120)


async def _model_with_file(client: httpx.AsyncClient) -> tuple[str, str]:
    name = unique("race")
    assert (await client.post("/api/v1/models", json={"name": name})).status_code == 201
    run = (await client.post("/api/v1/runs", json={})).json()
    await client.put(f"/api/v1/runs/{run['id']}/artifacts/model.bin", content=b"weights")
    return name, run["id"]


async def test_fifty_concurrent_creates_yield_versions_1_to_50(live_server: LiveServer, api_tokens: Tokens) -> None:
    async with _client(live_server, api_tokens.writer) as client:
        name, run_id = await _model_with_file(client)
        responses = await asyncio.gather(
            *(
                client.post(f"/api/v1/models/{name}/versions", json={"run_id": run_id, "path": "model.bin"})
                for _ in range(50)
            )
        )
        assert [r.status_code for r in responses] == [201] * 50, [r.text for r in responses if r.status_code != 201]
        numbers = sorted(r.json()["version"] for r in responses)
        listed = (await client.get(f"/api/v1/models/{name}/versions", params={"limit": 100})).json()["items"]
    assert numbers == list(range(1, 51))
    assert [v["version"] for v in listed] == list(range(1, 51))


async def test_racing_promotions_with_expect_exactly_one_wins(live_server: LiveServer, api_tokens: Tokens) -> None:
    async with _client(live_server, api_tokens.writer) as client:
        name, run_id = await _model_with_file(client)
        for _ in range(21):
            await client.post(f"/api/v1/models/{name}/versions", json={"run_id": run_id, "path": "model.bin"})
        await client.put(f"/api/v1/models/{name}/aliases/staging", json={"version": 1})
        # 20 clients all believe staging is at v1 and try to move it to their own version.
        responses = await asyncio.gather(
            *(
                client.put(f"/api/v1/models/{name}/aliases/staging", json={"version": v, "expect": 1})
                for v in range(2, 22)
            )
        )
        codes = sorted(r.status_code for r in responses)
        winner = next(r.json() for r in responses if r.status_code == 200)
        losers = [r.json() for r in responses if r.status_code == 409]
        history = (await client.get(f"/api/v1/models/{name}/promotions", params={"alias": "staging"})).json()
        holder = (await client.get(f"/api/v1/models/{name}/aliases/staging")).json()
    assert codes == [200] + [409] * 19
    assert all(body["code"] == "alias_moved" for body in losers)
    assert holder["version"] == winner["to_version"]
    assert [(p["from_version"], p["to_version"]) for p in history] == [(1, winner["to_version"]), (None, 1)]


async def test_racing_first_assignment_with_expect_none(live_server: LiveServer, api_tokens: Tokens) -> None:
    async with _client(live_server, api_tokens.writer) as client:
        name, run_id = await _model_with_file(client)
        for _ in range(10):
            await client.post(f"/api/v1/models/{name}/versions", json={"run_id": run_id, "path": "model.bin"})
        responses = await asyncio.gather(
            *(
                client.put(f"/api/v1/models/{name}/aliases/champion", json={"version": v, "expect": 0})
                for v in range(1, 11)
            )
        )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 9


async def test_interrupted_upload_leaves_no_partial_file_and_no_row(
    live_server: LiveServer, api_tokens: Tokens
) -> None:
    async with _client(live_server, api_tokens.writer) as client:
        run = (await client.post("/api/v1/runs", json={})).json()
    tmp_dir = live_server.data_dir / "tmp"
    before = set(tmp_dir.glob("*")) if tmp_dir.exists() else set()
    host, port = live_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = (
            f"PUT /api/v1/runs/{run['id']}/artifacts/big.bin HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {api_tokens.writer}\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n"
        )
        sock.sendall(head.encode())
        for _ in range(8):  # 8 MiB of the promised 50, then hang up
            sock.sendall(b"\x01" * (1024 * 1024))
    deadline = time.monotonic() + 10
    leftovers: set[object] = set()
    while time.monotonic() < deadline:
        leftovers = set(tmp_dir.glob("*")) - before
        if not leftovers:
            break
        await asyncio.sleep(0.1)
    assert not leftovers, f"partial upload left behind: {leftovers}"
    async with _client(live_server, api_tokens.writer) as client:
        assert (await client.get(f"/api/v1/runs/{run['id']}/artifacts")).json() == []
        missing = await client.get(f"/api/v1/runs/{run['id']}/artifacts/big.bin")
        assert missing.status_code == 404
        # The server is still healthy and the same path can be uploaded properly afterwards.
        ok = await client.put(f"/api/v1/runs/{run['id']}/artifacts/big.bin", content=b"complete")
        assert ok.status_code == 201
