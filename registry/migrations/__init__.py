"""Alembic migrations, run programmatically (``registry db upgrade`` and on ``registry serve`` start)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from registry.db import Database

HERE = Path(__file__).parent
# Any constant works; it only has to be the same in every replica that may migrate at once.
MIGRATION_LOCK_KEY = 7_031_977
log = logging.getLogger("registry.migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Replicas starting together serialise on an advisory lock."""
    async with db.write_engine.begin() as conn:
        if db.is_postgres:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        await conn.run_sync(_upgrade, revision)


def head() -> str | None:
    """The newest revision this release knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current(db: Database) -> str | None:
    """The revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    async with db.read_engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def wait_for_head(db: Database, *, within: float, poll: float = 1.0) -> bool:
    """Wait until another process (a migration job) has brought the schema to :func:`head`. False if it is
    not there after ``within`` seconds; an unreachable database counts as not there yet."""
    wanted = head()
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            if await current(db) == wanted:
                return True
        except Exception as exc:  # not reachable yet, or no schema at all: keep waiting
            log.info("waiting for the schema to reach %s: %s", wanted, exc.__class__.__name__)
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(poll)
