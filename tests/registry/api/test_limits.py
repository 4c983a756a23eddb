"""Configurable size limits: oversize uploads get 413 and leave nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from registry.api.app import create_app
from registry.db import Database
from registry.settings import Settings
from registry.storage.local import LocalBlobStore
from tests.conftest import Tokens, bearer


@pytest.fixture
async def small_limits(
    db: Database, database_url: str, tmp_path: Path, api_tokens: Tokens
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = Settings(
        data_dir=tmp_path, database_url=database_url, max_upload_bytes=1000, max_request_body_bytes=2000
    )
    app = create_app(settings, db=db, store=LocalBlobStore(tmp_path / "blobs"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://registry", headers=bearer(api_tokens.writer)
    ) as client:
        yield client, settings


async def test_oversize_upload_is_413_with_no_file_or_row(small_limits: tuple[httpx.AsyncClient, Settings]) -> None:
    client, settings = small_limits
    run = (await client.post("/api/v1/runs", json={})).json()

    async def body() -> AsyncIterator[bytes]:  # no content-length: the limit is enforced while streaming
        for _ in range(5):
            yield b"x" * 400

    response = await client.put(f"/api/v1/runs/{run['id']}/artifacts/big.bin", content=body())
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    assert list(settings.tmp_dir.glob("*")) == []
    assert not any((settings.data_dir / "blobs").rglob("*")) if (settings.data_dir / "blobs").exists() else True
    assert (await client.get(f"/api/v1/runs/{run['id']}/artifacts")).json() == []
    ok = await client.put(f"/api/v1/runs/{run['id']}/artifacts/small.bin", content=b"y" * 1000)
    assert ok.status_code == 201


async def test_json_body_limit_is_configurable(small_limits: tuple[httpx.AsyncClient, Settings]) -> None:
    client, _ = small_limits
    response = await client.post("/api/v1/models", json={"name": "m", "description": "d" * 3000})
    assert response.status_code == 413 and response.headers["content-type"].startswith("application/problem+json")
