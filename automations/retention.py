"""Retention: forget finished webhook deliveries, finished automation jobs and old outbox events.

What is never deleted, whatever its age:

- a delivery that is ``pending`` or ``delivering`` (it still has to be sent), and an automation job that is
  ``pending`` or ``running``;
- an event that some outbox cursor has not passed yet (a consumer still has to read it; with no cursor at
  all, nothing was consumed, so no event goes), or that a kept delivery or unfinished job still refers to.

Deliveries go first, so the events they pinned can go in the same run. Each step deletes at most ``BATCH``
rows, so one run holds its locks briefly; the next slot continues. Inbound GitHub deliveries and inbound
``webhook-id``s have their own, shorter horizons (``github_hooks.KEEP_DELIVERIES``, ``triggers.KEEP_MESSAGES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, not_, select
from sqlalchemy.ext.asyncio import AsyncSession

from automations.domain import AutomationJob, Delivery, OutboxCursor
from registry.db import Database
from registry.domain.base import utcnow
from registry.domain.events import Event
from registry.settings import Settings

BATCH = 5000
FINISHED_DELIVERIES = ("succeeded", "failed", "cancelled")
FINISHED_JOBS = ("succeeded", "failed")


@dataclass(frozen=True, slots=True)
class Pruned:
    deliveries: int = 0
    jobs: int = 0
    events: int = 0

    def __bool__(self) -> bool:
        return bool(self.deliveries or self.jobs or self.events)


async def prune(
    session: AsyncSession,
    *,
    event_days: float,
    delivery_days: float,
    now: datetime | None = None,
    batch: int = BATCH,
) -> Pruned:
    """Delete up to ``batch`` finished deliveries, finished jobs and passed events past their retention (a
    retention of 0 keeps that kind forever). Their attempts and inbound message ids go with them (cascade)."""
    now = now or utcnow()
    deliveries = jobs = events = 0
    if delivery_days > 0:
        before = now - timedelta(days=delivery_days)
        old = (
            select(Delivery.id)
            .where(Delivery.status.in_(FINISHED_DELIVERIES), Delivery.updated_at < before)
            .order_by(Delivery.id)
            .limit(batch)
        )
        deliveries = _count(await session.execute(delete(Delivery).where(Delivery.id.in_(old))))
        old = (
            select(AutomationJob.id)
            .where(AutomationJob.status.in_(FINISHED_JOBS), AutomationJob.updated_at < before)
            .order_by(AutomationJob.id)
            .limit(batch)
        )
        jobs = _count(await session.execute(delete(AutomationJob).where(AutomationJob.id.in_(old))))
    if event_days > 0:
        passed = await session.scalar(select(func.min(OutboxCursor.seq)))
        if passed is not None:
            unfinished = AutomationJob.status.not_in(FINISHED_JOBS)
            old = (
                select(Event.seq)
                .where(
                    Event.seq <= passed,
                    Event.created_at < now - timedelta(days=event_days),
                    not_(exists().where(Delivery.event_seq == Event.seq)),
                    not_(exists().where(AutomationJob.event_seq == Event.seq, unfinished)),
                )
                .order_by(Event.seq)
                .limit(batch)
            )
            events = _count(await session.execute(delete(Event).where(Event.seq.in_(old))))
    return Pruned(deliveries=deliveries, jobs=jobs, events=events)


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def prune_events(db: Database, settings: Settings) -> str | None:
    """The scheduled job (``events.prune``)."""
    async with db.write() as session:
        done = await prune(
            session, event_days=settings.event_retention_days, delivery_days=settings.delivery_retention_days
        )
    if not done:
        return None
    return f"pruned {done.deliveries} deliveries, {done.jobs} jobs, {done.events} events"
