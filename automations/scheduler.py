"""Periodic jobs in every replica (APScheduler 3.11, in-memory), each run claiming its time slot in the
database so that, however many replicas fire, exactly one runs it.

APScheduler 3.x has no cross-process coordination (a shared job store would run jobs twice), so every
replica schedules the same jobs on epoch-aligned slots and the ``scheduler_slots`` primary key decides who
runs: ``INSERT … ON CONFLICT DO NOTHING`` affects one row for the winner and none for everybody else.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import delete

from automations import jobs, retention
from automations.domain import SchedulerSlot
from monitoring import jobs as monitor_jobs
from registry import observability
from registry.db import Database
from registry.domain.base import utcnow
from registry.services import gc
from registry.services._sql import upsert
from registry.settings import Settings

log = logging.getLogger("automations.scheduler")
JobFn = Callable[[Database, Settings], Awaitable[str | None]]  # what it did, None when nothing
# How long a job's slot rows (claim, finish time, outcome) are kept: a day, or 100 slots if that is longer.
HISTORY = timedelta(days=1)
HISTORY_SLOTS = 100


@dataclass(frozen=True, slots=True)
class Periodic:
    name: str
    seconds: float
    fn: JobFn


def schedule(settings: Settings) -> tuple[Periodic, ...]:
    """The one place that maps job functions to schedules."""
    return (
        Periodic("deliveries.reap_stale_locks", settings.reap_interval_seconds, jobs.reap_stale_locks),
        Periodic("webhooks.disable_failing", 60.0, jobs.disable_failing_webhooks),
        Periodic("hooks.forget_old_messages", 600.0, jobs.forget_hook_messages),
        # Every minute: runs the monitor specs' cron schedules (each fire time claimed once more, per model).
        Periodic("monitor.scheduled_checks", 60.0, monitor_jobs.run_scheduled_checks),
        # Storage reclaim and retention (docs/storage.md): both idempotent, one batch of work per slot.
        Periodic("blobs.collect_garbage", settings.gc_interval_seconds, gc.collect_garbage),
        Periodic("events.prune", 3600.0, retention.prune_events),
    )


def slot_of(seconds: float, now: float | None = None) -> datetime:
    current = time.time() if now is None else now
    return datetime.fromtimestamp(math.floor(current / seconds) * seconds, UTC)


async def claim_slot(db: Database, *, job: str, slot: datetime, me: str) -> bool:
    async with db.write() as session:
        result = await session.execute(
            upsert(session, SchedulerSlot).values(job=job, slot_start=slot, claimed_by=me).on_conflict_do_nothing()
        )
        return bool(getattr(result, "rowcount", 0))


async def run_once(db: Database, settings: Settings, periodic: Periodic, *, me: str) -> bool:
    """Run ``periodic`` for the current slot if this replica wins the claim. Returns whether it ran."""
    slot = slot_of(periodic.seconds)
    if not await claim_slot(db, job=periodic.name, slot=slot, me=me):
        log.debug("slot %s of %s already claimed elsewhere", slot.isoformat(), periodic.name)
        return False
    level = logging.INFO
    try:
        did = await periodic.fn(db, settings)
    except Exception as exc:  # a failed run is recorded, and the next slot tries again
        log.exception("scheduled job %s failed", periodic.name)
        outcome = f"error: {exc.__class__.__name__}: {exc}"
    else:
        outcome = did or "nothing to do"
        if did is None:
            level = logging.DEBUG  # a housekeeping job every few seconds must not fill the log with no-ops
    keep_after = slot - max(HISTORY, timedelta(seconds=periodic.seconds * HISTORY_SLOTS))
    async with db.write() as session:
        row = await session.get(SchedulerSlot, (periodic.name, slot))
        if row is not None:
            row.finished_at, row.outcome = utcnow(), outcome[:2000]
        # Slot rows are the claims; old ones are history only, and a 5-second job would add 17,280 a day.
        await session.execute(
            delete(SchedulerSlot).where(SchedulerSlot.job == periodic.name, SchedulerSlot.slot_start < keep_after)
        )
    observability.metrics().slot_runs.labels(periodic.name, "error" if outcome.startswith("error:") else "ok").inc()
    log.log(level, "scheduled job %s ran for slot %s on %s: %s", periodic.name, slot.isoformat(), me, outcome)
    return True


def start(db: Database, settings: Settings, *, me: str) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")
    for periodic in schedule(settings):
        scheduler.add_job(
            run_once,
            IntervalTrigger(seconds=periodic.seconds, start_date=datetime(2000, 1, 1, tzinfo=UTC)),
            args=(db, settings, periodic),
            kwargs={"me": me},
            id=periodic.name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(periodic.seconds / 2)),
        )
    scheduler.start()
    return scheduler
