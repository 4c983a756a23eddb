"""Webhook endpoint factory (a public https URL that is never called: for tests of rows, not of sending)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from automations.domain import Webhook
from automations.webhooks import create
from registry.domain.auth import Role
from registry.services.auth import Actor

MAINTAINER = Actor(name="max", role=Role.maintainer)


async def create_webhook(session: AsyncSession, *, event_types: list[str] | None = None) -> Webhook:
    hook, _secret = await create(
        session,
        url=f"https://hooks.example.com/{uuid.uuid4().hex}",
        event_types=event_types or ["*"],
        actor=MAINTAINER,
    )
    return hook
