"""Inbound triggers: named secrets that let an outside system (CI, a labelling pipeline) sign a request
asking the registry to run a gate, without holding an API token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from automations import signing
from automations.domain import AutomationJob, HookMessage, HookTrigger
from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.errors import AlreadyExists, InvalidInput, NotFound
from registry.services import audit, names
from registry.services._sql import upsert
from registry.services.auth import Actor, require

MESSAGE_ID_MAX = 256
KEEP_MESSAGES = timedelta(hours=1)
"""How long a ``webhook-id`` is remembered. A signature is accepted for ``signing.TOLERANCE_SECONDS`` either
side of its timestamp, so after ten minutes a replay fails verification anyway; an hour leaves margin for
clock skew between replicas."""


async def create(
    session: AsyncSession, *, name: str, actor: Actor, model: str | None = None
) -> tuple[HookTrigger, str]:
    require(actor, Role.maintainer, action="creating a trigger")
    names.key(name, what="trigger name")
    if model is not None:
        names.model_name(model)
    if await session.scalar(select(HookTrigger.id).where(HookTrigger.name == name)) is not None:
        raise AlreadyExists(f"a trigger named {name!r} already exists")
    secret = signing.new_secret()
    trigger = HookTrigger(name=name, secret=secret, model=model, created_by=actor.name)
    session.add(trigger)
    await session.flush()
    await audit.log(session, action="trigger.created", actor=actor.name, target=name, details={"model": model})
    return trigger, secret


async def list_triggers(session: AsyncSession) -> list[HookTrigger]:
    return list(await session.scalars(select(HookTrigger).order_by(HookTrigger.name)))


async def remove(session: AsyncSession, *, name: str, actor: Actor) -> None:
    require(actor, Role.maintainer, action="removing a trigger")
    result = await session.execute(delete(HookTrigger).where(HookTrigger.name == name))
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"no trigger named {name!r}")
    await audit.log(session, action="trigger.removed", actor=actor.name, target=name)


async def verify(session: AsyncSession, *, headers: Mapping[str, str], body: bytes) -> HookTrigger | None:
    """The enabled trigger whose secret signed this request (Standard Webhooks), if any."""
    for trigger in await session.scalars(select(HookTrigger).where(HookTrigger.enabled.is_(True))):
        if signing.verify([trigger.secret], headers, body) is not None:
            return trigger
    return None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A verified signed request: the trigger that signed it and its ``webhook-id``."""

    trigger_id: int
    message_id: str

    @classmethod
    def of(cls, trigger: HookTrigger, message_id: str) -> InboundMessage:
        if not message_id or len(message_id) > MESSAGE_ID_MAX:
            raise InvalidInput(f"webhook-id must be 1 to {MESSAGE_ID_MAX} characters", field="webhook-id")
        return cls(trigger.id, message_id)


async def job_for(session: AsyncSession, message: InboundMessage) -> AutomationJob | None:
    """The job an earlier request with this ``webhook-id`` from this trigger queued, if any."""
    job_id = await session.scalar(
        select(HookMessage.job_id).where(
            HookMessage.trigger_id == message.trigger_id, HookMessage.message_id == message.message_id
        )
    )
    return None if job_id is None else await session.get(AutomationJob, job_id)


async def remember(session: AsyncSession, message: InboundMessage, *, job: AutomationJob) -> AutomationJob:
    """Record that ``message`` queued ``job`` (flushed), and return the job the message stands for.

    The unique key (trigger, webhook-id) decides between two copies of one request arriving together: on
    PostgreSQL the second insert waits for the first transaction and then inserts nothing, and that copy
    drops the job it made and answers with the first one's. (SQLite runs one write transaction at a time, so
    ``job_for`` has already seen the first.)"""
    inserted = await session.execute(
        upsert(session, HookMessage)
        .values(trigger_id=message.trigger_id, message_id=message.message_id, job_id=job.id, received_at=utcnow())
        .on_conflict_do_nothing()
    )
    if getattr(inserted, "rowcount", 0):
        return job
    await session.delete(job)
    await session.flush()
    earlier = await job_for(session, message)
    if earlier is None:  # the first copy's job is gone already (its trigger was removed meanwhile)
        raise NotFound("the trigger that signed this request no longer exists")
    return earlier


async def forget_old_messages(session: AsyncSession) -> int:
    """Delete remembered ``webhook-id``s older than KEEP_MESSAGES (replays of them fail verification)."""
    result = await session.execute(delete(HookMessage).where(HookMessage.received_at < utcnow() - KEEP_MESSAGES))
    return int(getattr(result, "rowcount", 0) or 0)
