"""The verified-token cache: revocations through the API apply at once, others within the TTL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from registry.api.app import create_app
from registry.db import Database
from registry.domain.auth import Role
from registry.services import tokens
from registry.services.auth import Actor
from registry.settings import Settings
from registry.storage.local import LocalBlobStore
from tests.conftest import Tokens, bearer, unique

ADMIN = Actor(name="tests", role=Role.admin)


@pytest.fixture
async def cached_app(db: Database, database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(data_dir=tmp_path, database_url=database_url, auth_cache_seconds=0.5)
    app = create_app(settings, db=db, store=LocalBlobStore(tmp_path / "blobs"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as client:
        yield client


async def _token(db: Database) -> tuple[str, str]:
    async with db.write() as session:
        new = await tokens.create(session, name=unique("cached"), role=Role.reader, actor=ADMIN)
    return new.token.name, new.secret


async def test_api_revocation_is_immediate(cached_app: httpx.AsyncClient, db: Database, api_tokens: Tokens) -> None:
    name, secret = await _token(db)
    assert (await cached_app.get("/api/v1/models", headers=bearer(secret))).status_code == 200
    revoked = await cached_app.delete(f"/api/v1/tokens/{name}", headers=bearer(api_tokens.admin))
    assert revoked.status_code == 200
    assert (await cached_app.get("/api/v1/models", headers=bearer(secret))).status_code == 401


async def test_database_revocation_applies_within_the_ttl(cached_app: httpx.AsyncClient, db: Database) -> None:
    name, secret = await _token(db)
    assert (await cached_app.get("/api/v1/models", headers=bearer(secret))).status_code == 200
    async with db.write() as session:
        await tokens.revoke(session, name=name, actor=ADMIN)
    await asyncio.sleep(0.6)
    assert (await cached_app.get("/api/v1/models", headers=bearer(secret))).status_code == 401


async def test_unknown_tokens_are_never_cached(cached_app: httpx.AsyncClient) -> None:
    for _ in range(2):
        assert (await cached_app.get("/api/v1/models", headers=bearer("mk_aaaaaaaaaaaa_nope"))).status_code == 401
