"""Alembic migrations, run programmatically (``registry db upgrade`` and on ``registry serve`` start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from registry.db import Database

HERE = Path(__file__).parent
# Any constant works; it only has to be the same in every replica that may migrate at once.
MIGRATION_LOCK_KEY = 7_031_977


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
