"""Dialect helpers shared by services (upserts have the same API on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def dialect(session: AsyncSession) -> str:
    """``sqlite`` or ``postgresql``."""
    return session.get_bind().dialect.name


def upsert(session: AsyncSession, table: Any) -> Any:
    """``INSERT`` that supports ``on_conflict_do_nothing/_update`` on the session's dialect."""
    return insert_for(dialect(session), table)


_BUILT: dict[tuple[str, str], Any] = {}


def statement(session: AsyncSession, name: str, build: Callable[[str], Any]) -> Any:
    """A statement built once per dialect by ``build(dialect)`` and reused.

    For hot write paths: execute it with a list of parameter dicts (``session.execute(stmt, rows)``) so
    SQLAlchemy compiles it once and batches the rows, instead of compiling a new multi-VALUES statement
    on every call.
    """
    key = (dialect(session), name)
    found = _BUILT.get(key)
    if found is None:
        found = _BUILT[key] = build(key[0])
    return found


def insert_for(dialect_name: str, table: Any) -> Any:
    """``INSERT`` with ``on_conflict_*`` for a dialect name."""
    return postgresql.insert(table) if dialect_name == "postgresql" else sqlite.insert(table)


async def put_tags(session: AsyncSession, table: Any, owner: str, owner_id: object, tags: dict[str, str]) -> None:
    """Insert or overwrite ``tags`` of one owner in a ``(<owner>, key) → value`` tag table (runs, models,
    versions), through one statement per table and dialect."""
    if not tags:
        return

    def build(dialect_name: str) -> Any:
        stmt = insert_for(dialect_name, table)
        return stmt.on_conflict_do_update(index_elements=[owner, "key"], set_={"value": stmt.excluded.value})

    rows = [{owner: owner_id, "key": key, "value": value} for key, value in tags.items()]
    await session.execute(statement(session, f"tags:{table.name}", build), rows)
