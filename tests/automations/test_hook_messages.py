"""Remembered inbound webhook-ids below the HTTP surface (both backends, real databases): one job per message,
the loser of a race drops its own job, old ids are forgotten, and ids are checked."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from automations import triggers
from automations.domain import AutomationJob, HookMessage, HookTrigger
from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.errors import InvalidInput
from registry.services.auth import Actor

MAINTAINER = Actor(name="max", role=Role.maintainer)


async def _trigger(session: AsyncSession) -> HookTrigger:
    trigger, _ = await triggers.create(session, name=f"t-{uuid.uuid4().hex[:8]}", actor=MAINTAINER)
    return trigger


async def _job(session: AsyncSession) -> AutomationJob:
    job = AutomationJob(kind="run_gate", params={}, actor="trigger:t", role="writer", next_attempt_at=utcnow())
    session.add(job)
    await session.flush()
    return job


async def test_a_message_stands_for_the_first_job_it_queued(session: AsyncSession) -> None:
    trigger = await _trigger(session)
    message = triggers.InboundMessage.of(trigger, f"msg_{uuid.uuid4().hex}")
    assert await triggers.job_for(session, message) is None
    first = await _job(session)
    assert await triggers.remember(session, message, job=first) is first
    assert await triggers.job_for(session, message) is first
    # A copy that raced past job_for (another replica) made its own job: it is dropped for the first one.
    second = await _job(session)
    assert await triggers.remember(session, message, job=second) is first
    assert await session.scalar(select(func.count()).where(AutomationJob.id == second.id)) == 0
    other = triggers.InboundMessage.of(await _trigger(session), message.message_id)
    assert await triggers.job_for(session, other) is None  # ids are per trigger


async def test_old_messages_are_forgotten(session: AsyncSession) -> None:
    trigger = await _trigger(session)
    old, recent = (triggers.InboundMessage.of(trigger, f"msg_{uuid.uuid4().hex}") for _ in range(2))
    for message in (old, recent):
        await triggers.remember(session, message, job=await _job(session))
    await session.execute(
        update(HookMessage)
        .where(HookMessage.message_id == old.message_id)
        .values(received_at=utcnow() - triggers.KEEP_MESSAGES - timedelta(minutes=1))
    )
    assert await triggers.forget_old_messages(session) >= 1
    assert await triggers.job_for(session, old) is None and await triggers.job_for(session, recent) is not None


@pytest.mark.parametrize("message_id", ["", "m" * (triggers.MESSAGE_ID_MAX + 1)])
async def test_message_ids_are_checked(session: AsyncSession, message_id: str) -> None:
    with pytest.raises(InvalidInput, match="webhook-id"):
        triggers.InboundMessage.of(await _trigger(session), message_id)
