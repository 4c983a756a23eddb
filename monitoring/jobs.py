"""Scheduled drift checks: each model's monitor spec may name a cron schedule (UTC).

``automations.scheduler`` runs :func:`run_scheduled_checks` every minute in every replica (claiming the minute,
so one replica scans). Each due cron time is then claimed once more as its own slot
(``monitor.check:<model id>`` at the fire time), so a check runs once per fire time cluster-wide, also when
two scans overlap or a late scan sees a fire time the previous one already handled.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from monitoring import checks, service
from monitoring.domain import MonitorSpec
from registry.db import Database
from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.domain.models import RegisteredModel
from registry.errors import RegistryError
from registry.services.auth import Actor
from registry.settings import Settings
from registry.storage import open_store

log = logging.getLogger("monitoring.jobs")
LOOKBACK = timedelta(minutes=5)
"""A fire time this recent still runs when its minute's scan was missed (every replica busy or restarting)."""
MONITOR = Actor(name="monitor", role=Role.writer)


def latest_fire(cron: str, now: datetime) -> datetime | None:
    """The last time in ``(now - LOOKBACK, now]`` that ``cron`` (5 fields, UTC) fires, if any."""
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(cron, timezone=UTC)
    last = None
    fire = trigger.get_next_fire_time(None, now - LOOKBACK + timedelta(seconds=1))
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return last


async def run_scheduled_checks(db: Database, settings: Settings, *, now: datetime | None = None) -> str | None:
    """Run the checks whose schedule fired within LOOKBACK and that no replica ran yet. Idempotent."""
    # Imported here: automations.scheduler imports this module to schedule it.
    from automations.scheduler import claim_slot

    now = now or utcnow()
    query = select(MonitorSpec, RegisteredModel.name).join(RegisteredModel, RegisteredModel.id == MonitorSpec.model_id)
    async with db.read() as session:
        specs = (await session.execute(query)).all()
    due: list[tuple[str, int, str, datetime]] = []
    for row, name in specs:
        try:
            spec = service.load_spec(row.text)
        except RegistryError:  # stored by an earlier release whose rules were looser: skipped, and said so
            log.warning("the monitor spec of %s no longer parses; its scheduled checks are skipped", name)
            continue
        fire = latest_fire(spec.schedule, now) if spec.schedule else None
        if fire is not None:
            due.append((name, row.model_id, spec.alias, fire))
    if not due:
        return None
    done: list[str] = []
    store = open_store(settings)
    try:
        for name, model_id, alias, fire in due:
            job = f"monitor.check:{model_id}"
            if not await claim_slot(db, job=job, slot=fire, me=settings.instance):
                continue
            try:
                check = await checks.run_check(
                    db, store, model_name=name, alias=alias, version=None, end=fire, actor=MONITOR,
                    origin="schedule", tmp_dir=settings.tmp_dir,
                )  # fmt: skip
            except RegistryError as exc:  # alias unset, no baseline ...: the next fire time tries again
                outcome = f"{name}@{alias}: {exc.message}"
            else:
                alert = f" ({check.alert})" if check.alert else ""
                outcome = f"{name}@{alias} v{check.version}: check #{check.id} {check.status}{alert}"
            await _finish(db, job=job, slot=fire, outcome=outcome)
            done.append(outcome)
    finally:
        await store.close()
    return "; ".join(done) if done else None


async def _finish(db: Database, *, job: str, slot: datetime, outcome: str) -> None:
    """Record what the fire time's run did on its slot row, and drop the model's slot rows older than a day
    (they are claims; kept a while as history, like the scheduler's own)."""
    from automations.domain import SchedulerSlot
    from automations.scheduler import HISTORY

    async with db.write() as session:
        row = await session.get(SchedulerSlot, (job, slot))
        if row is not None:
            row.finished_at, row.outcome = utcnow(), outcome[:2000]
        await session.execute(
            delete(SchedulerSlot).where(SchedulerSlot.job == job, SchedulerSlot.slot_start < slot - HISTORY)
        )
