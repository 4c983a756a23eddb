"""The outbox: every state change records an ``Event`` in the same transaction.

``seq`` must increase in *commit* order, or a consumer polling ``after=SEQ`` could skip a row that commits
late with a smaller seq. On PostgreSQL, sequences hand out numbers at insert time, not commit time, so the
insert takes a transaction-scoped advisory lock held until commit: event-writing transactions commit one at
a time in seq order (PyPI's journal does the same). SQLite has a single writer, so the order holds there.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from sqlalchemy import CTE, ColumnElement, Table, bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from registry import observability
from registry.domain.base import utcnow
from registry.domain.events import Event
from registry.services._sql import dialect

OUTBOX_LOCK_KEY = 7_031_978


@dataclass(frozen=True, slots=True)
class Recorded:
    seq: int
    id: str


_EVENTS = cast(Table, Event.__table__)
_COLUMNS = ("id", "type", "subject", "actor", "data", "model", "created_at", "request_id")
_RECORD: Final = insert(_EVENTS).returning(_EVENTS.c.seq)
_TURN = select(func.pg_advisory_xact_lock(OUTBOX_LOCK_KEY).label("held")).cte("outbox_turn").prefix_with("MATERIALIZED")
_RECORD_PG: Final = (
    insert(_EVENTS)
    .from_select(
        list(_COLUMNS),
        select(*(bindparam(f"e_{name}", type_=_EVENTS.c[name].type) for name in _COLUMNS)).select_from(_TURN),
    )
    .returning(_EVENTS.c.seq)
)
"""Built once (every change records an event): PostgreSQL's takes the outbox lock in a CTE the insert reads."""


def record_pg_with(*writes: CTE, returning: Sequence[ColumnElement[Any]]) -> ReturningInsert[Any]:
    """PostgreSQL: ``record``'s statement carrying other data-modifying CTEs (``writes``), so a change and its
    event are one round trip. Execute it with ``pg_params(event_values(...))`` plus the writes' parameters
    (the event's are prefixed: SQLAlchemy takes execute-time keys that name a column, such as ``id``, as
    values for every INSERT in the statement, the writes' too); it returns ``seq`` and then ``returning``.
    The writes run in the statement that takes the outbox lock; call ``recorded`` afterwards."""
    return _RECORD_PG.add_cte(*writes).returning(*returning)


def pg_params(values: dict[str, Any]) -> dict[str, Any]:
    """An event's values as the PostgreSQL statements' parameters."""
    return {f"e_{name}": value for name, value in values.items()}


def event_values(*, type: str, subject: str, actor: str, data: dict[str, Any], model: str | None) -> dict[str, Any]:
    """An event row's values (a new id, now, the request's id), as ``record`` inserts them."""
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": type,
        "subject": subject,
        "actor": actor,
        "data": data,
        "model": model,
        "created_at": utcnow(),
        "request_id": observability.request_id.get(),
    }


def recorded(session: AsyncSession) -> None:
    """The transaction wrote an event: the boundary wakes outbox consumers after commit."""
    session.info["outbox_written"] = True


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
    values = event_values(type=type, subject=subject, actor=actor, data=data, model=model)
    if dialect(session) == "postgresql":
        seq = (await session.execute(_RECORD_PG, pg_params(values))).scalar_one()
    else:
        seq = (await session.execute(_RECORD, values)).scalar_one()
    recorded(session)
    return Recorded(seq=int(seq), id=values["id"])


async def list_after(
    session: AsyncSession, *, after: int = 0, limit: int = 100, model: str | None = None, type: str | None = None
) -> list[Event]:
    query = select(Event).where(Event.seq > after).order_by(Event.seq).limit(limit)
    if model is not None:
        query = query.where(Event.model == model)
    if type is not None:
        query = query.where(Event.type == type)
    return list(await session.scalars(query))
