"""Uploads of every shape through a real `registry serve` process: sized and chunked bodies cut into uneven
pieces, small and multi-batch, one after another on one keep-alive connection, all arrive whole."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import httpx

from tests.conftest import LiveServer, Tokens, bearer


def ragged(data: bytes) -> Iterator[bytes]:
    sizes = [1, 5000, 65_536, 65_537, 1 << 20]
    start = index = 0
    while start < len(data):
        size = sizes[index % len(sizes)]
        yield data[start : start + size]
        start, index = start + size, index + 1


def test_uploads_of_every_shape_arrive_whole_on_one_connection(live_server: LiveServer, api_tokens: Tokens) -> None:
    data = os.urandom(9 * 1024 * 1024 + 3)
    digest = hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=live_server.url, headers=bearer(api_tokens.writer), timeout=60) as client:
        run = client.post("/api/v1/runs", json={}).json()
        base = f"/api/v1/runs/{run['id']}/artifacts"
        sized = client.put(f"{base}/sized.bin", content=ragged(data), headers={"content-length": str(len(data))})
        chunked = client.put(f"{base}/chunked.bin", content=ragged(data))  # transfer-encoding: chunked
        small = client.put(f"{base}/small.txt", content=b"tiny")
        assert [r.status_code for r in (sized, chunked, small)] == [201, 201, 201]
        assert sized.json()["sha256"] == chunked.json()["sha256"] == digest
        # Keep-alive: every request above and below went over one connection, each body kept to itself.
        assert client.get(f"{base}/chunked.bin").content == data
        assert client.get(f"{base}/small.txt").content == b"tiny"
        listing = client.get(base).json()
    assert {f["path"]: f["size"] for f in listing} == {"sized.bin": len(data), "chunked.bin": len(data), "small.txt": 4}
