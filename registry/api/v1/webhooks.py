"""Webhook subscriptions and deliveries (maintainers manage them; readers can list).

Below maintainer a webhook's URL is shown as its scheme and host only: for Slack- or Teams-style hooks the
path is the credential. Ids beyond the BIGINT range name nothing (404); such numbers in filters are 400."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
from litestar import Controller, delete, get, post

from automations import ssrf, webhooks
from automations.domain import Delivery, DeliveryAttempt, Webhook
from registry.api.security import MAINTAINER
from registry.api.v1._common import clamp_limit, int64_or_none, iso
from registry.db import Database
from registry.domain.auth import Role
from registry.domain.events import Event
from registry.errors import InvalidInput, NotFound
from registry.services.auth import Actor
from registry.settings import Settings


class WebhookIn(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    events: list[str]
    model: str | None = None
    description: str | None = None


class WebhookOut(msgspec.Struct):
    id: int
    url: str
    """In full for maintainers; for others scheme and host, with ``/***`` for a path or query."""
    url_redacted: bool
    events: list[str]
    model: str | None
    description: str | None
    enabled: bool
    disabled_reason: str | None
    last_success_at: str | None
    failing_since: str | None
    created_by: str
    created_at: str | None
    secret: str | None = None
    """Only when created or rotated."""


class AttemptOut(msgspec.Struct):
    attempt: int
    started_at: str | None
    duration_ms: int
    status_code: int | None
    error: str | None


class DeliveryOut(msgspec.Struct):
    id: int
    webhook_id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: int | None
    created_at: str | None
    succeeded_at: str | None
    history: list[AttemptOut] = []


class RecoverIn(msgspec.Struct, forbid_unknown_fields=True):
    since: datetime


class DisableIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: str | None = None


def render(hook: Webhook, actor: Actor, secret: str | None = None) -> WebhookOut:
    shown = None if actor.allows(Role.maintainer) else webhooks.redacted_url(hook.url)
    return WebhookOut(
        id=hook.id,
        url=shown if shown is not None else hook.url,
        url_redacted=shown is not None,
        events=hook.event_types,
        model=hook.model,
        description=hook.description,
        enabled=hook.enabled,
        disabled_reason=hook.disabled_reason,
        last_success_at=iso(hook.last_success_at),
        failing_since=iso(hook.failing_since),
        created_by=hook.created_by,
        created_at=iso(hook.created_at),
        secret=secret,
    )


def render_delivery(d: Delivery, e: Event, attempts: list[DeliveryAttempt] | None = None) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        webhook_id=d.webhook_id,
        event_id=e.id,
        event_type=e.type,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=iso(d.next_attempt_at),
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        last_latency_ms=d.last_latency_ms,
        created_at=iso(d.created_at),
        succeeded_at=iso(d.succeeded_at),
        history=[
            AttemptOut(
                attempt=a.attempt_no,
                started_at=iso(a.started_at),
                duration_ms=a.duration_ms,
                status_code=a.status_code,
                error=a.error,
            )
            for a in attempts or []
        ],
    )


def _webhook(webhook_id: int) -> int:
    if int64_or_none(webhook_id) is None:
        raise NotFound(f"webhook {webhook_id} does not exist (see `registry webhooks list`)")
    return webhook_id


def _delivery(delivery_id: int) -> int:
    if int64_or_none(delivery_id) is None:
        raise NotFound(f"delivery {delivery_id} does not exist")
    return delivery_id


def _filter(value: int | None, field: str) -> int | None:
    if value is not None and int64_or_none(value) is None:
        raise InvalidInput(f"{field} is out of range", field=field)
    return value


class WebhooksController(Controller):
    path = "/webhooks"

    @post("/", guards=MAINTAINER, status_code=201)
    async def add(self, data: WebhookIn, db: Database, actor: Actor, settings: Settings) -> WebhookOut:
        async with db.write() as session:
            hook, secret = await webhooks.create(
                session,
                url=data.url,
                event_types=data.events,
                actor=actor,
                allow=ssrf.allow_list(settings.webhook_allow_hosts),
                model=data.model,
                description=data.description,
            )
            return render(hook, actor, secret)

    @get("/")
    async def list_webhooks(self, db: Database, actor: Actor) -> list[WebhookOut]:
        async with db.read() as session:
            return [render(h, actor) for h in await webhooks.list_webhooks(session)]

    @get("/{webhook_id:int}")
    async def show(self, webhook_id: int, db: Database, actor: Actor) -> WebhookOut:
        async with db.read() as session:
            return render(await webhooks.get(session, webhook_id=_webhook(webhook_id)), actor)

    @post("/{webhook_id:int}/disable", guards=MAINTAINER, status_code=200)
    async def disable(self, webhook_id: int, db: Database, actor: Actor, data: DisableIn | None = None) -> WebhookOut:
        async with db.write() as session:
            hook = await webhooks.set_enabled(
                session,
                webhook_id=_webhook(webhook_id),
                enabled=False,
                actor=actor,
                reason=data.reason if data else None,
            )
            return render(hook, actor)

    @post("/{webhook_id:int}/enable", guards=MAINTAINER, status_code=200)
    async def enable(self, webhook_id: int, db: Database, actor: Actor) -> WebhookOut:
        async with db.write() as session:
            hook = await webhooks.set_enabled(session, webhook_id=_webhook(webhook_id), enabled=True, actor=actor)
            return render(hook, actor)

    @post("/{webhook_id:int}/rotate-secret", guards=MAINTAINER, status_code=200)
    async def rotate(self, webhook_id: int, db: Database, actor: Actor, settings: Settings) -> WebhookOut:
        overlap = timedelta(hours=settings.webhook_rotation_overlap_hours)
        async with db.write() as session:
            hook, secret = await webhooks.rotate_secret(
                session, webhook_id=_webhook(webhook_id), actor=actor, overlap=overlap
            )
            return render(hook, actor, secret)

    @post("/{webhook_id:int}/test", guards=MAINTAINER, status_code=202)
    async def test(self, webhook_id: int, db: Database, actor: Actor) -> dict[str, Any]:
        async with db.write() as session:
            event = await webhooks.send_test(session, webhook_id=_webhook(webhook_id), actor=actor)
        return {"event_id": event.id, "webhook_id": webhook_id}

    @delete("/{webhook_id:int}", guards=MAINTAINER, status_code=200)
    async def remove(self, webhook_id: int, db: Database, actor: Actor) -> dict[str, Any]:
        async with db.write() as session:
            await webhooks.remove(session, webhook_id=_webhook(webhook_id), actor=actor)
        return {"id": webhook_id, "removed": True}

    @post("/{webhook_id:int}/recover", guards=MAINTAINER, status_code=200)
    async def recover(self, webhook_id: int, data: RecoverIn, db: Database, actor: Actor) -> dict[str, Any]:
        if data.since.tzinfo is None:
            raise InvalidInput("`since` needs a time zone (e.g. 2026-01-01T00:00:00Z)", field="since")
        async with db.write() as session:
            count = await webhooks.recover(session, webhook_id=_webhook(webhook_id), since=data.since, actor=actor)
        return {"webhook_id": webhook_id, "requeued": count}

    @get("/deliveries")
    async def deliveries(
        self,
        db: Database,
        status: str | None = None,
        webhook_id: int | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[DeliveryOut]:
        async with db.read() as session:
            rows = await webhooks.list_deliveries(
                session,
                status=status,
                webhook_id=_filter(webhook_id, "webhook_id"),
                limit=clamp_limit(limit),
                before=_filter(before, "before"),
            )
            history = await webhooks.attempts_of(session, delivery_ids=[d.id for d, _ in rows])
        return [render_delivery(d, e, history.get(d.id)) for d, e in rows]

    @post("/deliveries/{delivery_id:int}/redeliver", guards=MAINTAINER, status_code=200)
    async def redeliver(self, delivery_id: int, db: Database, actor: Actor) -> dict[str, Any]:
        async with db.write() as session:
            found = await webhooks.redeliver(session, delivery_id=_delivery(delivery_id), actor=actor)
        return {"id": found.id, "status": found.status}
