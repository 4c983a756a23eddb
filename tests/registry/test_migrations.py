"""Alembic creates the whole schema on an empty database of each backend, and agrees with the ORM."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection

import automations.domain  # noqa: F401  (all tables on one metadata)
import monitoring.domain  # noqa: F401
from registry.db import Database
from registry.domain import Base
from registry.domain.experiments import Experiment


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_head_creates_every_table_and_matches_the_models(db: Database) -> None:
    # `db` is a fresh, empty database migrated with `alembic upgrade head` (see conftest).
    async with db.write_engine.connect() as conn:
        tables = await conn.run_sync(_tables)
        diff = await conn.run_sync(_diff)
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables
    assert diff == [], f"ORM models and migrations disagree: {diff}"


async def test_default_experiment_is_seeded(db: Database) -> None:
    async with db.read() as session:
        default = await session.scalar(select(Experiment).where(Experiment.id == 0))
    assert default is not None and default.name == "Default"


async def test_upgrade_is_idempotent(db: Database) -> None:
    from registry import migrations

    await migrations.upgrade(db)  # already at head: a no-op, not an error
    async with db.write_engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
