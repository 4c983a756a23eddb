"""The outbox: every state change records an ``Event`` in the same transaction.

``seq`` must increase in *commit* order, or a consumer polling ``after=SEQ`` could skip a row that commits
late with a smaller seq. On PostgreSQL, sequences hand out numbers at insert time, not commit time, so the
insert takes a transaction-scoped advisory lock held until commit: event-writing transactions commit one at
a time in seq order (PyPI's journal does the same). SQLite has a single writer, so the order holds there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry import observability
from registry.domain.base import utcnow
from registry.domain.events import Event
from registry.services._sql import dialect

OUTBOX_LOCK_KEY = 7_031_978


@dataclass(frozen=True, slots=True)
class Recorded:
    seq: int
    id: str


async def record(
    session: AsyncSession,
    *,
    type: str,
    subject: str,
    actor: str,
    data: dict[str, Any],
    model: str | None = None,
) -> Recorded:
    """Append an event row; visible to consumers once the surrounding transaction commits.

    One statement: on PostgreSQL the outbox lock is taken in a materialised CTE the insert reads from, so it
    is held before the row draws its ``seq``, without a round trip of its own."""
    # Rows the caller added go first: on PostgreSQL the outbox lock is then held for the commit alone.
    await session.flush()
    columns = Event.__table__.c
    event_id = f"evt_{uuid.uuid4().hex}"
    values: dict[str, Any] = {
        "id": event_id,
        "type": type,
        "subject": subject,
        "actor": actor,
        "data": data,
        "model": model,
        "created_at": utcnow(),
        "request_id": observability.request_id.get(),
    }
    if dialect(session) == "postgresql":
        turn = select(func.pg_advisory_xact_lock(OUTBOX_LOCK_KEY).label("held")).cte("outbox_turn")
        turn = turn.prefix_with("MATERIALIZED")
        row = select(*(literal(value, columns[name].type) for name, value in values.items())).select_from(turn)
        statement = insert(Event).from_select(list(values), row)
    else:
        statement = insert(Event).values(values)
    seq = (await session.execute(statement.returning(Event.seq))).scalar_one()
    session.info["outbox_written"] = True  # the boundary wakes outbox consumers after commit
    return Recorded(seq=int(seq), id=event_id)


async def list_after(
    session: AsyncSession, *, after: int = 0, limit: int = 100, model: str | None = None, type: str | None = None
) -> list[Event]:
    query = select(Event).where(Event.seq > after).order_by(Event.seq).limit(limit)
    if model is not None:
        query = query.where(Event.model == model)
    if type is not None:
        query = query.where(Event.type == type)
    return list(await session.scalars(query))
