"""Claiming and recording deliveries below the HTTP surface (both backends, real databases): disabled endpoints
get nothing more, one endpoint gets at most its share of a claim, and a batch of outcomes survives one of its
deliveries disappearing."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from automations import delivery, fanout, webhooks
from automations.domain import Delivery, DeliveryAttempt, Webhook
from registry.domain.base import utcnow
from registry.services import events
from registry.settings import Settings
from tests.factories.webhooks import MAINTAINER, create_webhook

SETTINGS = Settings(webhook_retry_schedule=[0.0, 10.0, 100.0])
LEASE = timedelta(seconds=60)


async def _hook_with_deliveries(session: AsyncSession, count: int) -> tuple[Webhook, list[Delivery]]:
    hook = await create_webhook(session)
    made = []
    for _ in range(count):
        event = await events.record(session, type="webhook.test", subject="t", actor="t", data={"webhook_id": hook.id})
        made.append(Delivery(event_seq=event.seq, webhook_id=hook.id, status="pending", next_attempt_at=utcnow()))
    session.add_all(made)
    await session.flush()
    return hook, made


async def _claim(session: AsyncSession, me: str, wanted: set[int]) -> list[delivery.Claimed]:
    return [c for c in await delivery.claim(session, me=me, limit=10_000, lock=LEASE) if c.delivery_id in wanted]


def _failed(item: delivery.Claimed, status: int = 500) -> tuple[delivery.Claimed, delivery.Outcome]:
    return item, delivery.Outcome(started_at=utcnow(), duration_ms=3, status_code=status)


async def _statuses(session: AsyncSession, rows: list[Delivery]) -> dict[int, tuple[str, str | None]]:
    found = await session.execute(
        select(Delivery.id, Delivery.status, Delivery.last_error).where(Delivery.id.in_([d.id for d in rows]))
    )
    return {i: (status, error) for i, status, error in found.all()}


async def test_disabling_cancels_pending_deliveries_and_in_flight_failures(session: AsyncSession) -> None:
    me = f"worker-{uuid.uuid4().hex[:6]}"
    hook, rows = await _hook_with_deliveries(session, 3)
    ids = {d.id for d in rows}
    rows[2].next_attempt_at = utcnow() + timedelta(hours=1)  # a retry, waiting
    await session.flush()
    in_flight = await _claim(session, me, ids)
    assert len(in_flight) == 2
    await webhooks.set_enabled(session, webhook_id=hook.id, enabled=False, actor=MAINTAINER, reason="maintenance")
    assert (await _statuses(session, rows))[rows[2].id] == ("cancelled", "cancelled: endpoint disabled (maintenance)")
    # The two in flight: a success stands, a failure is cancelled rather than retried.
    ok = (in_flight[0], delivery.Outcome(started_at=utcnow(), duration_ms=2, status_code=200))
    await delivery.record(session, [ok, _failed(in_flight[1])], me=me, settings=SETTINGS)
    statuses = await _statuses(session, rows)
    assert statuses[in_flight[0].delivery_id][0] == "succeeded"
    assert statuses[in_flight[1].delivery_id] == ("cancelled", "cancelled: endpoint disabled (maintenance)")
    attempts = list(await session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(ids))))
    assert sorted(a.status_code or 0 for a in attempts) == [200, 500]  # both attempts are on record
    # Enabled again, `recover` requeues what was cancelled.
    await webhooks.set_enabled(session, webhook_id=hook.id, enabled=True, actor=MAINTAINER)
    assert await webhooks.recover(session, webhook_id=hook.id, since=utcnow() - timedelta(hours=1), actor=MAINTAINER)
    assert {c.delivery_id for c in await _claim(session, me, ids)} == {rows[2].id, in_flight[1].delivery_id}


async def test_claim_skips_endpoints_disabled_without_cancelling(session: AsyncSession) -> None:
    me = f"worker-{uuid.uuid4().hex[:6]}"
    hook, rows = await _hook_with_deliveries(session, 2)
    hook.enabled = False  # e.g. a disable committed by another replica while this claim runs
    await session.flush()
    assert await _claim(session, me, {d.id for d in rows}) == []
    hook.enabled = True
    await session.flush()
    assert len(await _claim(session, me, {d.id for d in rows})) == 2


async def test_claim_takes_at_most_a_share_per_endpoint(session: AsyncSession) -> None:
    me = f"worker-{uuid.uuid4().hex[:6]}"
    busy, busy_rows = await _hook_with_deliveries(session, 4)
    quiet, quiet_rows = await _hook_with_deliveries(session, 3)
    ids = {d.id for d in [*busy_rows, *quiet_rows]}

    async def claim(in_flight: dict[int, int]) -> list[int]:
        claimed = await delivery.claim(session, me=me, limit=10_000, lock=LEASE, per_webhook=2, in_flight=in_flight)
        return [c.webhook_id for c in claimed if c.delivery_id in ids]

    # One of the busy endpoint's is in flight already: one more of it, two of the other.
    assert sorted(await claim({busy.id: 1})) == sorted([busy.id, quiet.id, quiet.id])
    # Both at their share: neither gets more, though both have due deliveries left.
    assert await claim({busy.id: 2, quiet.id: 2}) == []
    assert await claim({busy.id: 2}) == [quiet.id]


async def test_a_vanished_delivery_does_not_sink_the_batch(session: AsyncSession) -> None:
    me = f"worker-{uuid.uuid4().hex[:6]}"
    doomed, doomed_rows = await _hook_with_deliveries(session, 2)
    _, kept_rows = await _hook_with_deliveries(session, 2)
    claimed = await _claim(session, me, {d.id for d in [*doomed_rows, *kept_rows]})
    assert len(claimed) == 4
    await session.execute(delete(Webhook).where(Webhook.id == doomed.id))  # cascades to its deliveries
    await delivery.record(session, [_failed(c, 200) for c in claimed], me=me, settings=SETTINGS)
    assert set((await _statuses(session, kept_rows)).values()) == {("succeeded", None)}
    assert await _statuses(session, doomed_rows) == {}
    recorded = set(await session.scalars(select(DeliveryAttempt.delivery_id)))
    assert {d.id for d in kept_rows} <= recorded


async def test_a_410_cancels_the_endpoints_other_outcomes_in_the_same_batch(session: AsyncSession) -> None:
    me = f"worker-{uuid.uuid4().hex[:6]}"
    hook, rows = await _hook_with_deliveries(session, 3)
    claimed = sorted(await _claim(session, me, {d.id for d in rows}), key=lambda c: c.delivery_id)
    await delivery.record(
        session, [_failed(claimed[0]), _failed(claimed[1], 410), _failed(claimed[2])], me=me, settings=SETTINGS
    )
    await session.refresh(hook)
    assert hook.enabled is False and hook.disabled_reason == "receiver answered 410 Gone"
    statuses = await _statuses(session, rows)
    assert statuses[claimed[1].delivery_id][0] == "failed"
    assert {statuses[claimed[i].delivery_id][0] for i in (0, 2)} == {"cancelled"}


async def test_fan_out_of_a_large_batch_to_many_endpoints(session: AsyncSession) -> None:
    """More delivery rows in one round than one statement may carry bind parameters for (32767)."""
    hooks = []
    for _ in range(10):
        hook = await create_webhook(session)
        hooks.append(hook.id)
    for i in range(500):
        await events.record(session, type="model.created", subject=f"m{i}", actor="t", data={"name": f"m{i}"})
    while await fanout.fan_out(session, batch=1000):
        pass
    count = await session.scalar(select(func.count()).where(Delivery.webhook_id.in_(hooks)))
    assert count == 10 * 500


def test_retry_after_is_capped_to_a_storable_delay() -> None:
    for value in ("inf", "1e400", "99999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"):
        assert delivery._retry_after(value) == delivery.RETRY_AFTER_MAX, value
    assert delivery._retry_after("nan") is None
    assert utcnow() + timedelta(seconds=delivery.next_delay(SETTINGS, 1, delivery.RETRY_AFTER_MAX) or 0)
