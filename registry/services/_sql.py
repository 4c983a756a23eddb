"""Dialect helpers shared by services (upserts have the same API on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def dialect(session: AsyncSession) -> str:
    """``sqlite`` or ``postgresql``."""
    return session.get_bind().dialect.name


def upsert(session: AsyncSession, table: Any) -> Any:
    """``INSERT`` that supports ``on_conflict_do_nothing/_update`` on the session's dialect."""
    if dialect(session) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
