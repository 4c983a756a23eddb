"""Claim due deliveries, send them signed, record each attempt and decide what happens next.

At least once: a delivery is claimed (status ``delivering`` with a lease) before it is sent; if the process
dies before the outcome is recorded, the lease runs out, the reaper makes it ``pending`` again and it is sent
again with the same ``webhook-id`` (the receiver's idempotency key). Replicas never claim the same row:
``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

import registry
from automations import fanout, signing, ssrf
from automations.domain import Delivery, DeliveryAttempt, OutboxCursor, Webhook
from automations.sender import ConnectFailed, HttpxSender, Sender, SendError, Target
from automations.webhooks import cancelled_because, disable_automatically, signing_secrets
from registry.domain.base import utcnow
from registry.domain.events import Event
from registry.services._sql import dialect
from registry.settings import Settings

USER_AGENT = f"modelkeep-webhooks/{registry.__version__}"
log = logging.getLogger("automations.delivery")
RETRY_AFTER_MAX = 3 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: int
    attempt_no: int
    webhook_id: int
    url: str
    secrets: list[str]
    event_id: str
    event_type: str
    body: bytes
    request_id: str | None = None
    """The API request that recorded the event: sent as ``X-Request-ID`` so a delivery can be traced back."""
    event_created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    excerpt: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def body_of(event: Event) -> bytes:
    """The exact bytes sent (and signed) for an event: deterministic, so every retry sends the same body.
    ``data.sequence`` (the outbox seq) increases per resource, so receivers can drop stale updates."""
    payload = {
        "type": event.type,
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "id": event.id,
        "data": {**event.data, "sequence": event.seq},
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()


async def claim(
    session: AsyncSession,
    *,
    me: str,
    limit: int,
    lock: timedelta,
    per_webhook: int | None = None,
    in_flight: Mapping[int, int] | None = None,
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries of enabled endpoints to ``me`` (status ``delivering``), oldest due
    first, and at most ``per_webhook`` (if given) per endpoint, counting ``in_flight`` (endpoint id: deliveries
    the caller holds already) towards it. Endpoints already at ``per_webhook`` are skipped in the query, so their
    backlog cannot take the place of other endpoints' deliveries."""
    now = utcnow()
    in_flight = in_flight or {}
    due = (
        select(Delivery.id, Delivery.webhook_id)
        .where(
            Delivery.status == "pending",
            Delivery.next_attempt_at <= now,
            # A disabled endpoint's pending deliveries are cancelled when it is disabled; this also covers
            # a disable that commits while the claim runs.
            Delivery.webhook_id.in_(select(Webhook.id).where(Webhook.enabled.is_(True))),
        )
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
    )
    if per_webhook is not None:
        full = [hook_id for hook_id, count in in_flight.items() if count >= per_webhook]
        if full:
            due = due.where(Delivery.webhook_id.not_in(full))
    if dialect(session) == "postgresql":
        # Rows another replica is claiming are skipped; rows locked here and not taken (their endpoint's share
        # is used up) are free again at commit. SQLite: the write transaction holds the database lock.
        due = due.with_for_update(of=Delivery, skip_locked=True)
    taken: list[int] = []
    held = dict(in_flight)
    for delivery_id, webhook_id in (await session.execute(due)).all():
        if per_webhook is not None and held.get(webhook_id, 0) >= per_webhook:
            continue  # this endpoint's share is used up; a later claim skips it in the query
        held[webhook_id] = held.get(webhook_id, 0) + 1
        taken.append(delivery_id)
    if not taken:
        return []
    ids = list(
        await session.scalars(
            update(Delivery)
            .where(Delivery.id.in_(taken))
            .values(status="delivering", locked_by=me, locked_until=now + lock, updated_at=now)
            .returning(Delivery.id)
        )
    )
    rows = await session.execute(
        select(Delivery, Webhook, Event)
        .join(Webhook, Webhook.id == Delivery.webhook_id)
        .join(Event, Event.seq == Delivery.event_seq)
        .where(Delivery.id.in_(ids))
    )
    return [
        Claimed(
            delivery_id=d.id,
            attempt_no=d.attempts + 1,
            webhook_id=w.id,
            url=w.url,
            secrets=signing_secrets(w, now),
            event_id=e.id,
            event_type=e.type,
            body=body_of(e),
            request_id=e.request_id,
            event_created_at=e.created_at,
        )
        for d, w, e in rows.all()
    ]


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` value asks for (delta-seconds or an HTTP date), at most RETRY_AFTER_MAX.

    Capped so that whatever a receiver answers ("inf", a date in the year 9999) stays a date the database
    can store, and the delivery is tried again within the usual span of the schedule."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - utcnow()).total_seconds()
        except (TypeError, ValueError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), RETRY_AFTER_MAX)


async def send(sender: Sender | httpx.AsyncClient, item: Claimed, *, settings: Settings) -> Outcome:
    """POST one signed delivery. Never raises: every failure becomes an Outcome.

    ``webhook_timeout_seconds`` bounds the whole attempt (resolving, connecting, sending, reading the answer
    and up to 2 KiB of its body), not each read: a receiver trickling its answer cannot hold a slot past it.
    The host is resolved and checked now, and the connection goes to a checked address (see ``ssrf``).
    Callers that limit requests per destination wait in ``sender.reserve(item.url)`` first (untimed)."""
    if isinstance(sender, httpx.AsyncClient):
        sender = HttpxSender(sender)
    started, clock = utcnow(), time.perf_counter()
    timeout = settings.webhook_timeout_seconds

    def done(**kwargs: Any) -> Outcome:
        return Outcome(started_at=started, duration_ms=int((time.perf_counter() - clock) * 1000), **kwargs)

    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-event-type": item.event_type,
        **signing.headers(item.secrets, item.event_id, item.body),
    }
    if item.request_id:
        headers["x-request-id"] = item.request_id
    try:
        async with asyncio.timeout(timeout):
            addresses = await ssrf.check_destination(item.url, allow=ssrf.allow_list(settings.webhook_allow_hosts))
            reply = await sender.post(Target.of(item.url, addresses), headers, item.body)
    except ssrf.Blocked as exc:
        return done(error=f"blocked: {exc}")
    except TimeoutError:
        return done(error=f"timeout after {timeout:g}s")
    except (ConnectFailed, OSError) as exc:
        return done(error=f"connection failed: {exc}")
    except SendError as exc:
        return done(error=str(exc))
    except Exception as exc:  # a bug must cost one attempt, not leave the delivery leased until the reaper
        log.exception("sending delivery %s failed unexpectedly", item.delivery_id)
        return done(error=f"internal error: {exc.__class__.__name__}")
    # PostgreSQL text cannot hold NUL; the excerpt is for people to read.
    excerpt = reply.excerpt.decode("utf-8", "replace").replace("\x00", "\ufffd")
    return done(status_code=reply.status, excerpt=excerpt, retry_after=_retry_after(reply.retry_after))


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    """Deliveries waiting for their first or next attempt, or being sent."""
    oldest_pending_seconds: float
    events_to_fan_out: int
    """Committed events the fan-out has not turned into deliveries and jobs yet."""


async def backlog(session: AsyncSession) -> Backlog:
    """The outbox's queue depth now, for ``/metrics``."""
    pending, oldest = (
        await session.execute(
            select(func.count(), func.min(Delivery.created_at)).where(Delivery.status.in_(("pending", "delivering")))
        )
    ).one()
    last_seq = await session.scalar(select(func.max(Event.seq))) or 0
    fanned = await session.scalar(select(OutboxCursor.seq).where(OutboxCursor.name == fanout.CURSOR)) or 0
    age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    return Backlog(pending=int(pending), oldest_pending_seconds=max(0.0, age), events_to_fan_out=last_seq - fanned)


def next_delay(settings: Settings, attempts_made: int, retry_after: float | None) -> float | None:
    """Seconds until the next attempt, or None when the schedule is exhausted (±10% jitter; a longer
    ``Retry-After`` from the receiver wins)."""
    schedule = settings.webhook_retry_schedule
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made] * random.uniform(0.9, 1.1)
    return max(delay, retry_after) if retry_after is not None else delay


async def record(session: AsyncSession, results: list[tuple[Claimed, Outcome]], *, me: str, settings: Settings) -> None:
    """Store attempts and move each delivery on (succeeded / retry later / failed); 410 disables the endpoint.

    A delivery that no longer exists (its endpoint was removed while it was in flight) is skipped, attempt
    included, so the other outcomes of the batch are kept. A failed delivery of an endpoint that is disabled
    by now is cancelled instead of retried."""
    if not results:
        return
    now = utcnow()
    hook_query = (
        select(Webhook)
        .where(Webhook.id.in_({c.webhook_id for c, _ in results}))
        .order_by(Webhook.id)
        .execution_options(populate_existing=True)
    )
    delivery_query = (
        select(Delivery.id, Delivery.status, Delivery.locked_by, Delivery.succeeded_at)
        .where(Delivery.id.in_([c.delivery_id for c, _ in results]))
        .order_by(Delivery.id)
    )
    if dialect(session) == "postgresql":
        # Lock endpoints, then deliveries: the order in which removing an endpoint locks them (its row, then
        # the cascade), so a removal racing this batch waits for it, or it for the removal, and never
        # deadlocks; rows a committed removal deleted are simply not found. NO KEY UPDATE leaves fan-out's
        # foreign-key checks on these rows unblocked.
        hook_query = hook_query.with_for_update(key_share=True)
        delivery_query = delivery_query.with_for_update(key_share=True)
    hooks = {w.id: w for w in await session.scalars(hook_query)}
    current = {row.id: row for row in await session.execute(delivery_query)}
    attempts: list[dict[str, Any]] = []
    changes: list[tuple[Webhook, dict[str, Any]]] = []
    for item, outcome in results:
        delivery, hook = current.get(item.delivery_id), hooks.get(item.webhook_id)
        if delivery is None or hook is None:
            continue  # removed with its endpoint while in flight: nothing left to record it on
        attempts.append(
            {
                "delivery_id": item.delivery_id,
                "attempt_no": item.attempt_no,
                "started_at": outcome.started_at,
                "duration_ms": outcome.duration_ms,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "response_excerpt": outcome.excerpt,
            }
        )
        if delivery.status != "delivering" or delivery.locked_by != me:
            continue  # our lease ran out and the delivery moved on; the attempt is still on record
        change: dict[str, Any] = {
            "id": item.delivery_id,
            "attempts": item.attempt_no,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
            "last_latency_ms": outcome.duration_ms,
            "locked_by": None,
            "locked_until": None,
            "updated_at": now,
            "succeeded_at": delivery.succeeded_at,
            "next_attempt_at": None,
        }
        changes.append((hook, change))
        if outcome.ok:
            change.update(status="succeeded", succeeded_at=now)
            hook.last_success_at, hook.failing_since = now, None
            continue
        hook.failing_since = hook.failing_since or now
        if outcome.status_code == 410:
            change["status"] = "failed"
            if hook.enabled:
                await disable_automatically(session, hook=hook, reason="receiver answered 410 Gone")
            continue
        delay = next_delay(settings, item.attempt_no, outcome.retry_after)
        if delay is None:
            change["status"] = "failed"
        else:
            change.update(status="pending", next_attempt_at=now + timedelta(seconds=delay))
    for hook, change in changes:
        if change["status"] == "pending" and not hook.enabled:
            # Disabled while this attempt was in flight (or by a 410 later in this batch): no more retries.
            change.update(status="cancelled", next_attempt_at=None, last_error=cancelled_because(hook))
    if attempts:
        await session.execute(insert(DeliveryAttempt), attempts)
    if changes:
        await session.execute(update(Delivery), [change for _, change in changes])
    await session.flush()


async def reap(session: AsyncSession) -> int:
    """Return deliveries whose worker vanished (lease expired) to ``pending``."""
    now = utcnow()
    result = await session.execute(
        update(Delivery)
        .where(Delivery.status == "delivering", Delivery.locked_until < now)
        .values(status="pending", locked_by=None, locked_until=None, next_attempt_at=now, updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def disable_failing(session: AsyncSession, *, settings: Settings) -> int:
    """Disable endpoints that have had nothing but failures for days and have exhausted a delivery."""
    cutoff = utcnow() - timedelta(days=settings.webhook_disable_after_days)
    hooks = list(
        await session.scalars(select(Webhook).where(Webhook.enabled.is_(True), Webhook.failing_since < cutoff))
    )
    disabled = 0
    for hook in hooks:
        exhausted = await session.scalar(
            select(Delivery.id).where(Delivery.webhook_id == hook.id, Delivery.status == "failed").limit(1)
        )
        if exhausted is not None:
            await disable_automatically(
                session,
                hook=hook,
                reason=f"only failures since {hook.failing_since.isoformat() if hook.failing_since else '?'}",
            )
            disabled += 1
    return disabled
