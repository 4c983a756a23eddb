"""Audit log of security-relevant actions (tokens, protected aliases). Append-only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from registry import observability
from registry.domain.auth import AuditEntry


async def log(
    session: AsyncSession, *, action: str, actor: str, target: str, details: dict[str, Any] | None = None
) -> AuditEntry:
    entry = AuditEntry(
        action=action, actor=actor, target=target, details=details or {}, request_id=observability.request_id.get()
    )
    session.add(entry)
    await session.flush()
    return entry


async def list_entries(
    session: AsyncSession, *, action: str | None = None, after: int = 0, limit: int = 100
) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id).limit(limit)
    if action:
        query = query.where(AuditEntry.action == action)
    return list(await session.scalars(query))


async def newest_first(session: AsyncSession, *, action: str, before: int | None, limit: int) -> list[AuditEntry]:
    """Audit entries newest first, older than ``before`` when given (keyset on the id)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEntry.action == action)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    return list(await session.scalars(query))


async def actions(session: AsyncSession) -> list[str]:
    """The actions the log holds (for the filter), from the ``action`` index."""
    return [str(a) for a in await session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action))]
