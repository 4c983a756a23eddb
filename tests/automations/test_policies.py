"""The retry, disable and scheduling policies below the HTTP surface: backoff with jitter and Retry-After,
disabling endpoints after days of failures, and exclusive slot claims (both backends, real databases)."""

from __future__ import annotations

import asyncio
import email.utils
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from automations import delivery, scheduler
from automations.domain import Delivery, SchedulerSlot, Webhook
from registry.db import Database
from registry.domain.base import utcnow
from registry.services import events
from registry.settings import Settings
from tests.factories.webhooks import create_webhook


def test_backoff_follows_the_schedule_with_jitter_and_retry_after_wins() -> None:
    settings = Settings(webhook_retry_schedule=[0.0, 10.0, 100.0])
    seen = {round(delivery.next_delay(settings, 1, None) or 0, 3) for _ in range(200)}
    assert min(seen) >= 9.0 and max(seen) <= 11.0 and len(seen) > 20  # ±10%, actually random
    assert 90.0 <= (delivery.next_delay(settings, 2, None) or 0) <= 110.0
    assert delivery.next_delay(settings, 3, None) is None  # three attempts made: the schedule is exhausted
    assert delivery.next_delay(settings, 1, 50.0) == 50.0  # a longer Retry-After wins
    assert 9.0 <= (delivery.next_delay(settings, 1, 1.0) or 0) <= 11.0  # a shorter one does not shorten the wait
    assert delivery.next_delay(settings, 3, 5.0) is None  # nor extend the schedule


def test_retry_after_parsing() -> None:
    assert delivery._retry_after("120") == 120.0
    assert delivery._retry_after("-5") == 0.0
    when = delivery._retry_after(email.utils.formatdate(time.time() + 30, usegmt=True))
    assert when is not None and 28 <= when <= 31
    assert delivery._retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
    for junk in (None, "", "soon", "Wed, 99 Foo 2026"):
        assert delivery._retry_after(junk) is None


def test_slots_are_aligned_to_the_epoch() -> None:
    assert scheduler.slot_of(60, now=125.5) == datetime.fromtimestamp(120, UTC)
    assert scheduler.slot_of(1, now=1000.999) == datetime.fromtimestamp(1000, UTC)
    assert scheduler.slot_of(5, now=1004.9) == scheduler.slot_of(5, now=1000.0)


async def _failing_hook(session: AsyncSession, *, since: timedelta, exhausted: bool) -> Webhook:
    hook = await create_webhook(session)
    hook.failing_since = utcnow() - since
    event = await events.record(session, type="webhook.test", subject="t", actor="t", data={"webhook_id": hook.id})
    for status in ("failed", "pending") if exhausted else ("pending",):
        other = (
            event
            if status == "failed"
            else await events.record(session, type="webhook.test", subject="t", actor="t", data={"webhook_id": hook.id})
        )
        session.add(Delivery(event_seq=other.seq, webhook_id=hook.id, status=status, next_attempt_at=utcnow()))
    await session.flush()
    return hook


async def test_days_of_nothing_but_failures_disable_an_endpoint(session: AsyncSession) -> None:
    settings = Settings(webhook_disable_after_days=5)
    old_dead = await _failing_hook(session, since=timedelta(days=6), exhausted=True)
    old_retrying = await _failing_hook(session, since=timedelta(days=6), exhausted=False)
    recent_dead = await _failing_hook(session, since=timedelta(days=1), exhausted=True)
    assert await delivery.disable_failing(session, settings=settings) >= 1
    for hook in (old_dead, old_retrying, recent_dead):
        await session.refresh(hook)
    assert old_dead.enabled is False and "only failures since" in (old_dead.disabled_reason or "")
    assert old_retrying.enabled is True and recent_dead.enabled is True
    statuses = set(await session.scalars(select(Delivery.status).where(Delivery.webhook_id == old_dead.id)))
    assert statuses == {"failed", "cancelled"}  # what it still had pending is cancelled


async def test_one_run_per_slot_however_many_instances_fire(db: Database) -> None:
    ran: list[str] = []

    async def job(_db: Database, _settings: Settings) -> str:
        ran.append("x")
        await asyncio.sleep(0.05)
        return "done"

    periodic = scheduler.Periodic(f"test.exclusive-{uuid.uuid4().hex[:8]}", 3600.0, job)
    results = await asyncio.gather(
        *(scheduler.run_once(db, Settings(), periodic, me=f"instance-{i}") for i in range(6))
    )
    assert sorted(results) == [False] * 5 + [True] and len(ran) == 1
    async with db.read() as session:
        [row] = list(await session.scalars(select(SchedulerSlot).where(SchedulerSlot.job == periodic.name)))
    assert row.claimed_by == f"instance-{results.index(True)}" and row.outcome == "done" and row.finished_at
    assert row.slot_start == scheduler.slot_of(3600.0)
    # The next call in the same slot (a late or repeated fire) does not run it again.
    assert await scheduler.run_once(db, Settings(), periodic, me="instance-late") is False and len(ran) == 1


async def test_slot_history_is_kept_a_day_and_no_ops_say_so(db: Database) -> None:
    async def idle(_db: Database, _settings: Settings) -> str | None:
        return None

    periodic = scheduler.Periodic(f"test.history-{uuid.uuid4().hex[:8]}", 5.0, idle)
    now = scheduler.slot_of(5.0)
    old = [now - timedelta(days=1, seconds=5 * k) for k in (1, 2, 3)]  # past the day kept
    recent = now - timedelta(hours=23)
    async with db.write() as session:
        for start in [*old, recent]:
            session.add(SchedulerSlot(job=periodic.name, slot_start=start, claimed_by="earlier", outcome="x"))
    assert await scheduler.run_once(db, Settings(), periodic, me="me") is True
    async with db.read() as session:
        rows = list(await session.scalars(select(SchedulerSlot).where(SchedulerSlot.job == periodic.name)))
    assert sorted(r.slot_start for r in rows) == [recent, now]
    assert next(r for r in rows if r.slot_start == now).outcome == "nothing to do"
