"""Scheduled maintenance jobs (idempotent; each runs in its own transaction). Each returns what it did, or
None when there was nothing to do."""

from __future__ import annotations

from automations import actions, delivery, triggers
from registry.db import Database
from registry.settings import Settings


async def reap_stale_locks(db: Database, settings: Settings) -> str | None:
    """Deliveries and jobs whose worker died (lease expired) become pending again."""
    async with db.write() as session:
        deliveries = await delivery.reap(session)
        jobs = await actions.reap(session)
    return f"requeued {deliveries} deliveries, {jobs} jobs" if deliveries or jobs else None


async def disable_failing_webhooks(db: Database, settings: Settings) -> str | None:
    async with db.write() as session:
        count = await delivery.disable_failing(session, settings=settings)
    return f"disabled {count} endpoints" if count else None


async def forget_hook_messages(db: Database, settings: Settings) -> str | None:
    async with db.write() as session:
        count = await triggers.forget_old_messages(session)
    return f"forgot {count} inbound webhook-ids" if count else None
