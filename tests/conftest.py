"""Fixtures: a real SQLite and a real PostgreSQL database (fresh, migrated with Alembic), the ASGI app over
httpx, and a real `registry serve` process on loopback. Every database test runs on both backends;
PostgreSQL runs when MODELKEEP_TEST_POSTGRES_URL is set and is skipped with a visible reason otherwise."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from registry import migrations
from registry.db import Database
from registry.domain.auth import Role
from registry.services import tokens
from registry.services.auth import Actor
from registry.settings import Settings
from registry.storage.local import LocalBlobStore

pytest_plugins = ["tests.fixtures.seaweed"]

PG_ENV = "MODELKEEP_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgres"]
ROOT = Path(__file__).resolve().parent.parent


def unique(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _pg_admin(url: str, sql: str) -> None:
    import asyncpg

    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        database=parsed.database or "postgres",
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database per backend for the whole session."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'registry.db'}"
        return
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    name = f"mk_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await migrations.upgrade(database)
    yield database
    await database.dispose()


@pytest.fixture
async def session(db: Database) -> AsyncIterator[AsyncSession]:
    """A session inside an outer transaction that is rolled back at teardown (services' commits never
    happen: they only flush), so service tests leave nothing behind."""
    async with db.write_engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            yield session
        finally:
            await session.close()
            await outer.rollback()


@dataclass(frozen=True)
class Tokens:
    admin: str
    maintainer: str
    writer: str
    reader: str


@pytest.fixture(scope="session")
async def api_tokens(db: Database) -> Tokens:
    actor = Actor(name="tests", role=Role.admin)
    made: dict[str, str] = {}
    async with db.write() as s:
        for role in Role:
            made[role.name] = (await tokens.create(s, name=f"test-{role.name}", role=role, actor=actor)).secret
    return Tokens(**made)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def settings(database_url: str, data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, create_admin_token=False)


@pytest.fixture(scope="session")
async def app_client(db: Database, settings: Settings, api_tokens: Tokens) -> AsyncIterator[httpx.AsyncClient]:
    """The real ASGI app in-process, over httpx, authenticated as admin (pass other headers to override)."""
    from registry.api.app import create_app

    app = create_app(settings, db=db, store=LocalBlobStore(settings.data_dir / "blobs"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry", headers={"authorization": f"Bearer {api_tokens.admin}"}
    ) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    database_url: str
    log: Path


def start_server(
    database_url: str, data_dir: Path, *, extra_env: dict[str, str] | None = None, args: Sequence[str] = ()
) -> LiveServer:
    """``registry serve`` (with ``args``) on a free loopback port, once ``/health`` answers."""
    port = free_port()
    log = data_dir / f"server-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env.update(
        {
            "MODELKEEP_DATABASE_URL": database_url,
            "MODELKEEP_DATA_DIR": str(data_dir),
            "MODELKEEP_CREATE_ADMIN_TOKEN": "false",
            **(extra_env or {}),
        }
    )
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "registry", "serve", "--port", str(port), *args],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return LiveServer(url=url, process=process, data_dir=data_dir, database_url=database_url, log=log)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def live_server(database_url: str, data_dir: Path, api_tokens: Tokens) -> Iterator[LiveServer]:
    """A real `registry serve` process on loopback, on this backend's database."""
    # Loopback webhook receivers in tests need http:// and 127.0.0.1, which production refuses by default.
    # Auth cache off: tests revoke tokens through the database and expect the next request to fail.
    server = start_server(
        database_url,
        data_dir,
        extra_env={"MODELKEEP_WEBHOOK_ALLOW_HOSTS": "127.0.0.1,localhost", "MODELKEEP_AUTH_CACHE_SECONDS": "0"},
    )
    yield server
    stop_server(server)
