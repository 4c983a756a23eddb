"""The outbox: every state change records an ``Event`` in the same transaction.

``seq`` must increase in *commit* order, or a consumer polling ``after=SEQ`` could skip a row that commits
late with a smaller seq. On PostgreSQL, sequences hand out numbers at insert time, not commit time, so the
insert takes a transaction-scoped advisory lock held until commit: event-writing transactions commit one at
a time in seq order (PyPI's journal does the same). SQLite has a single writer, so the order holds there.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from registry import observability
from registry.domain.events import Event
from registry.services._sql import dialect

OUTBOX_LOCK_KEY = 7_031_978


async def record(
    session: AsyncSession,
    *,
    type: str,
    subject: str,
    actor: str,
    data: dict[str, Any],
    model: str | None = None,
) -> Event:
    """Append an event row; visible to consumers once the surrounding transaction commits."""
    if dialect(session) == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": OUTBOX_LOCK_KEY})
    event = Event(
        id=f"evt_{uuid.uuid4().hex}",
        type=type,
        subject=subject,
        actor=actor,
        data=data,
        model=model,
        request_id=observability.request_id.get(),
    )
    session.add(event)
    await session.flush()
    session.info["outbox_written"] = True  # the boundary wakes outbox consumers after commit
    return event


async def list_after(
    session: AsyncSession, *, after: int = 0, limit: int = 100, model: str | None = None, type: str | None = None
) -> list[Event]:
    query = select(Event).where(Event.seq > after).order_by(Event.seq).limit(limit)
    if model is not None:
        query = query.where(Event.model == model)
    if type is not None:
        query = query.where(Event.type == type)
    return list(await session.scalars(query))
