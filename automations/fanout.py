"""Events → deliveries and rule jobs.

Consumes the outbox in ``seq`` order behind a cursor that advances in the same transaction as the rows it
creates, so every committed event is fanned out exactly once even across crashes and replicas. ``seq``
increases in commit order (see ``registry.services.events``), so the cursor never skips a late commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from automations.domain import AutomationJob, AutomationRule, Delivery, OutboxCursor, Webhook
from automations.webhooks import ALL
from registry.domain.base import utcnow
from registry.domain.events import Event
from registry.services._sql import dialect, upsert

CURSOR = "automations"


def webhook_wants(hook: Webhook, event: Event) -> bool:
    if event.type == "webhook.test":
        return bool(event.data.get("webhook_id") == hook.id)
    if hook.created_at > event.created_at:
        return False  # subscribed after the event happened
    if ALL not in hook.event_types and event.type not in hook.event_types:
        return False
    return hook.model is None or hook.model == event.model


def rule_matches(rule: AutomationRule, event: Event) -> bool:
    if rule.on_event != event.type or (rule.model is not None and rule.model != event.model):
        return False
    if rule.created_at > event.created_at:
        return False
    for key, expected in (rule.conditions or {}).items():
        actual = event.data.get(key)
        allowed = expected if isinstance(expected, list) else [expected]
        if actual not in allowed:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Fanned:
    """What one ``fan_out`` did: events consumed, and the deliveries and rule jobs made for them."""

    events: int = 0
    deliveries: int = 0
    jobs: int = 0
    more: bool = False
    """The batch was full: more events may be waiting."""
    subscribers: bool | None = None
    """Whether any webhook or rule was enabled (None: not looked at)."""

    def __bool__(self) -> bool:
        return self.events > 0


async def _cursor(session: AsyncSession) -> OutboxCursor | None:
    """Lock the cursor row; None if another replica holds it right now (it is fanning out)."""
    query = select(OutboxCursor).where(OutboxCursor.name == CURSOR).execution_options(populate_existing=True)
    if dialect(session) == "postgresql":
        query = query.with_for_update(skip_locked=True)
    found = await session.scalar(query)
    if found is None:  # the first round on a new database (or another replica holds the row)
        await session.execute(upsert(session, OutboxCursor).values(name=CURSOR, seq=0).on_conflict_do_nothing())
        found = await session.scalar(query)
    return found


async def work_due(session: AsyncSession, *, now: datetime) -> bool:
    """Whether a round would find anything: events not fanned out yet, or deliveries or jobs due by ``now``.

    One read-only statement, so an idle replica's polls take no write lock (on SQLite, no turn at the
    database's single writer)."""
    fanned_to = select(OutboxCursor.seq).where(OutboxCursor.name == CURSOR).scalar_subquery()
    query = select(
        or_(
            exists().where(Event.seq > func.coalesce(fanned_to, 0)),
            exists().where(Delivery.status == "pending", Delivery.next_attempt_at <= now),
            exists().where(AutomationJob.status == "pending", AutomationJob.next_attempt_at <= now),
        )
    )
    return bool(await session.scalar(query))


async def fan_out(session: AsyncSession, *, batch: int = 1000) -> Fanned:
    """Create deliveries and rule jobs for the next events (at most ``batch`` of them)."""
    cursor = await _cursor(session)
    if cursor is None:
        return Fanned()
    hooks = list(await session.scalars(select(Webhook).where(Webhook.enabled.is_(True))))
    rules = list(await session.scalars(select(AutomationRule).where(AutomationRule.enabled.is_(True))))
    if not hooks and not rules:
        # Nothing subscribes: move past every committed event without loading them.
        last, count = (
            await session.execute(select(func.max(Event.seq), func.count()).where(Event.seq > cursor.seq))
        ).one()
        if last is None:
            return Fanned(subscribers=False)
        cursor.seq = last
        await session.flush()
        return Fanned(events=int(count), subscribers=False)
    pending = list(await session.scalars(select(Event).where(Event.seq > cursor.seq).order_by(Event.seq).limit(batch)))
    if not pending:
        return Fanned(subscribers=True)
    now = utcnow()
    deliveries: list[dict[str, Any]] = []
    jobs = 0
    for event in pending:
        for hook in hooks:
            if webhook_wants(hook, event):
                deliveries.append(
                    {
                        "event_seq": event.seq,
                        "webhook_id": hook.id,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        for rule in rules:
            if rule_matches(rule, event):
                jobs += 1
                session.add(
                    AutomationJob(
                        kind=rule.action,
                        params=job_params(rule, event),
                        rule_id=rule.id,
                        event_seq=event.seq,
                        actor=f"rule:{rule.name}",
                        role=rule.role,
                        next_attempt_at=now,
                    )
                )
    if deliveries:
        # Rows as executemany parameters, not one multi-row VALUES: a batch of events times the endpoints
        # that want them can exceed the drivers' limit on bind parameters in one statement (32767).
        await session.execute(upsert(session, Delivery).on_conflict_do_nothing(), deliveries)
    cursor.seq = pending[-1].seq
    await session.flush()
    return Fanned(
        events=len(pending), deliveries=len(deliveries), jobs=jobs, more=len(pending) >= batch, subscribers=True
    )


def job_params(rule: AutomationRule, event: Event) -> dict[str, Any]:
    """What the job acts on: the event's model and version, plus the rule's own parameters."""
    params = dict(rule.params or {})
    params.setdefault("model", event.model)
    if "version" in event.data:
        params.setdefault("version", event.data["version"])
    params["event"] = {"type": event.type, "id": event.id, "seq": event.seq}
    if "gate_run_id" in event.data:
        params["gate_run_id"] = event.data["gate_run_id"]
    if event.data.get("commit_sha"):  # a gate run on a GitHub event's commit is recorded with that commit
        params.setdefault("commit_sha", event.data["commit_sha"])
    return params
