"""Inbound triggers: named secrets that let an outside system (CI, a labelling pipeline) sign a request
asking the registry to run a gate, without holding an API token."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from automations import signing
from automations.domain import HookTrigger
from registry.domain.auth import Role
from registry.errors import AlreadyExists, NotFound
from registry.services import audit, names
from registry.services.auth import Actor, require


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
