"""Webhook subscriptions and their deliveries: add, list, enable/disable, rotate secrets, test, redeliver."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from automations import signing, ssrf
from automations.domain import Delivery, DeliveryAttempt, Webhook
from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.domain.events import Event
from registry.errors import InvalidInput, NotFound
from registry.services import audit, events
from registry.services.auth import Actor, require

EVENT_TYPES = (
    "model.created",
    "model_version.created",
    "model_version.deleted",
    "model_version.stage_changed",
    "alias.moved",
    "alias.removed",
    "gate.completed",
    "gate_policy.set",
    "drift.detected",
    "drift.resolved",
    "monitor.performance_degraded",
    "run.created",
    "run.finished",
    "artifact_version.created",
    "webhook.test",
)
ALL = "*"


def check_event_types(types: list[str]) -> list[str]:
    if not types:
        raise InvalidInput("subscribe to at least one event type (or '*')", field="events")
    unknown = [t for t in types if t != ALL and t not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}", field="events"
        )
    return sorted(set(types))


def redacted_url(url: str) -> str | None:
    """``url`` as shown to those below maintainer: scheme and host (and port), the path and query replaced by
    ``/***``, since for Slack- or Teams-style hooks they are the credential. None when there is nothing to
    hide (no path beyond ``/``, no query)."""
    parts = urlsplit(url)
    if parts.path in ("", "/") and not parts.query and not parts.fragment:
        return None
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/***"


async def create(
    session: AsyncSession,
    *,
    url: str,
    event_types: list[str],
    actor: Actor,
    allow: ssrf.AllowList = ssrf.NOTHING,
    model: str | None = None,
    description: str | None = None,
) -> tuple[Webhook, str]:
    """Subscribe ``url``; returns the webhook and its ``whsec_`` secret (shown once). ``allow``: what the
    URL may name besides public https hosts (``MODELKEEP_WEBHOOK_ALLOW_HOSTS``)."""
    require(actor, Role.maintainer, action="adding a webhook")
    ssrf.check_url(url, allow=allow)
    secret = signing.new_secret()
    hook = Webhook(
        url=url,
        event_types=check_event_types(event_types),
        model=model,
        description=description,
        secret=secret,
        created_by=actor.name,
    )
    session.add(hook)
    await session.flush()
    await audit.log(
        session,
        action="webhook.created",
        actor=actor.name,
        target=url,
        details={"id": hook.id, "events": hook.event_types, "model": model},
    )
    return hook, secret


async def get(session: AsyncSession, *, webhook_id: int) -> Webhook:
    hook = await session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"webhook {webhook_id} does not exist (see `registry webhooks list`)")
    return hook


async def list_webhooks(session: AsyncSession) -> list[Webhook]:
    return list(await session.scalars(select(Webhook).order_by(Webhook.id)))


async def set_enabled(
    session: AsyncSession, *, webhook_id: int, enabled: bool, actor: Actor, reason: str | None = None
) -> Webhook:
    require(actor, Role.maintainer, action="enabling or disabling a webhook")
    hook = await get(session, webhook_id=webhook_id)
    hook.enabled = enabled
    hook.disabled_at = None if enabled else utcnow()
    hook.disabled_reason = None if enabled else (reason or f"disabled by {actor.name}")
    if enabled:
        hook.failing_since = None
    else:
        await cancel_pending(session, hook=hook)
    hook.updated_at = utcnow()
    await audit.log(
        session,
        action="webhook.enabled" if enabled else "webhook.disabled",
        actor=actor.name,
        target=hook.url,
        details={"id": hook.id, "reason": hook.disabled_reason},
    )
    await session.flush()
    return hook


async def disable_automatically(session: AsyncSession, *, hook: Webhook, reason: str) -> None:
    """Disable an endpoint that is gone or failing for days, and cancel what it still had pending."""
    hook.enabled, hook.disabled_at, hook.disabled_reason, hook.updated_at = False, utcnow(), reason, utcnow()
    await cancel_pending(session, hook=hook)
    await audit.log(
        session, action="webhook.disabled", actor="system", target=hook.url, details={"id": hook.id, "reason": reason}
    )


def cancelled_because(hook: Webhook) -> str:
    return f"cancelled: endpoint disabled ({hook.disabled_reason or 'no reason given'})"


async def cancel_pending(session: AsyncSession, *, hook: Webhook) -> int:
    """Cancel the disabled endpoint's pending deliveries (retries included), with the reason as their last error.

    Deliveries in flight are settled when their outcome is recorded: a success stands, anything else is
    cancelled then rather than retried. ``recover`` requeues cancelled deliveries once the endpoint is enabled."""
    result = await session.execute(
        update(Delivery)
        .where(Delivery.webhook_id == hook.id, Delivery.status == "pending")
        .values(status="cancelled", next_attempt_at=None, last_error=cancelled_because(hook), updated_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def rotate_secret(
    session: AsyncSession, *, webhook_id: int, actor: Actor, overlap: timedelta
) -> tuple[Webhook, str]:
    """New secret; the old one keeps signing (a second signature) until the overlap ends."""
    require(actor, Role.maintainer, action="rotating a webhook secret")
    hook = await get(session, webhook_id=webhook_id)
    secret = signing.new_secret()
    hook.previous_secret, hook.previous_secret_expires_at = hook.secret, utcnow() + overlap
    hook.secret, hook.updated_at = secret, utcnow()
    await audit.log(
        session,
        action="webhook.secret_rotated",
        actor=actor.name,
        target=hook.url,
        details={"id": hook.id, "overlap_until": hook.previous_secret_expires_at.isoformat()},
    )
    await session.flush()
    return hook, secret


def signing_secrets(hook: Webhook, now: datetime) -> list[str]:
    keys = [hook.secret]
    if hook.previous_secret and hook.previous_secret_expires_at and hook.previous_secret_expires_at > now:
        keys.append(hook.previous_secret)
    return keys


async def remove(session: AsyncSession, *, webhook_id: int, actor: Actor) -> None:
    require(actor, Role.maintainer, action="removing a webhook")
    hook = await get(session, webhook_id=webhook_id)
    await audit.log(session, action="webhook.removed", actor=actor.name, target=hook.url, details={"id": hook.id})
    await session.delete(hook)
    await session.flush()


async def send_test(session: AsyncSession, *, webhook_id: int, actor: Actor) -> events.Recorded:
    """Emit a ``webhook.test`` event addressed to this endpoint only."""
    hook = await get(session, webhook_id=webhook_id)
    return await events.record(
        session,
        type="webhook.test",
        subject=f"webhooks/{hook.id}",
        actor=actor.name,
        data={"webhook_id": hook.id, "message": "test event from Modelkeep"},
    )


async def list_deliveries(
    session: AsyncSession,
    *,
    status: str | None = None,
    webhook_id: int | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[tuple[Delivery, Event]]:
    query = (
        select(Delivery, Event).join(Event, Event.seq == Delivery.event_seq).order_by(Delivery.id.desc()).limit(limit)
    )
    if status:
        query = query.where(Delivery.status == status)
    if webhook_id is not None:
        query = query.where(Delivery.webhook_id == webhook_id)
    if before is not None:
        query = query.where(Delivery.id < before)
    return [(d, e) for d, e in (await session.execute(query)).all()]


async def attempts_of(session: AsyncSession, *, delivery_ids: list[int]) -> dict[int, list[DeliveryAttempt]]:
    found: dict[int, list[DeliveryAttempt]] = {}
    if delivery_ids:
        rows = await session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(delivery_ids)).order_by(DeliveryAttempt.id)
        )
        for attempt in rows:
            found.setdefault(attempt.delivery_id, []).append(attempt)
    return found


async def redeliver(session: AsyncSession, *, delivery_id: int, actor: Actor) -> Delivery:
    """Start a new attempt sequence for one delivery; the receiver sees the same ``webhook-id``."""
    require(actor, Role.maintainer, action="redelivering a webhook")
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} does not exist")
    if delivery.status == "delivering":
        raise InvalidInput(f"delivery {delivery_id} is being delivered right now", field="delivery")
    delivery.status, delivery.attempts, delivery.next_attempt_at = "pending", 0, utcnow()
    delivery.locked_by = delivery.locked_until = None
    delivery.updated_at = utcnow()
    await session.flush()
    return delivery


async def recover(session: AsyncSession, *, webhook_id: int, since: datetime, actor: Actor) -> int:
    """Requeue the endpoint's failed (and cancelled) deliveries created since ``since``."""
    require(actor, Role.maintainer, action="recovering webhook deliveries")
    await get(session, webhook_id=webhook_id)
    result = await session.execute(
        update(Delivery)
        .where(
            Delivery.webhook_id == webhook_id,
            Delivery.status.in_(("failed", "cancelled")),
            Delivery.created_at >= since,
        )
        .values(
            status="pending",
            attempts=0,
            next_attempt_at=utcnow(),
            locked_by=None,
            locked_until=None,
            updated_at=utcnow(),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def open_delivery_counts(session: AsyncSession) -> dict[tuple[int, str], int]:
    """``(webhook id, status)`` → deliveries, for the pending and the failed ones only (counted through the
    ``status`` index; succeeded deliveries, the many, are not counted)."""
    rows = await session.execute(
        select(Delivery.webhook_id, Delivery.status, func.count())
        .where(Delivery.status.in_(("pending", "failed")))
        .group_by(Delivery.webhook_id, Delivery.status)
    )
    return {(int(w), str(s)): int(n) for w, s, n in rows.all()}
