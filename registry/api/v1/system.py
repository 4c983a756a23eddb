"""Health, events feed and audit log."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from automations import delivery
from registry import observability
from registry.api.security import ADMIN, authenticate
from registry.api.v1._common import Page, QueryInt64, clamp_limit, iso
from registry.db import Database
from registry.errors import Unavailable
from registry.services import audit, events

log = logging.getLogger("registry.api")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EventOut(msgspec.Struct):
    seq: int
    id: str
    type: str
    subject: str
    actor: str
    model: str | None
    data: dict[str, Any]
    created_at: str | None
    request_id: str | None = None


class AuditOut(msgspec.Struct):
    id: int
    action: str
    actor: str
    target: str
    details: dict[str, Any]
    created_at: str | None
    request_id: str | None = None


HEALTH_TIMEOUT_S = 3.0
"""A database that does not answer ``SELECT 1`` within this is reported unreachable."""


@get("/health")
async def health(db: Database) -> dict[str, str]:
    """200 while the database answers; 503 (problem+json) while it does not, so a load balancer or a
    Kubernetes readiness probe takes the replica out until it does."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            await db.ping()
    except Exception as exc:
        log.warning("health check: the database did not answer: %s", exc.__class__.__name__)
        raise Unavailable(
            f"the {db.dialect} database is unreachable ({exc.__class__.__name__})", code="database_unavailable"
        ) from None
    return {"status": "ok", "database": db.dialect}


async def metrics_access(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: any valid token, unless ``MODELKEEP_METRICS_PUBLIC`` is set."""
    if not connection.app.state.settings.metrics_public:
        await authenticate(connection, handler)


@get("/metrics", guards=[metrics_access], include_in_schema=False, media_type=CONTENT_TYPE)
async def metrics(db: Database) -> Response[bytes]:
    """Prometheus text format: every worker's counters and histograms, plus the outbox backlog read now."""
    values: dict[str, tuple[str, float]] = {}
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S), db.read() as session:
            backlog = await delivery.backlog(session)
    except Exception as exc:
        log.warning("metrics: the outbox backlog could not be read: %s", exc.__class__.__name__)
        values["modelkeep_database_up"] = ("1 when the database answered this scrape.", 0)
    else:
        values["modelkeep_database_up"] = ("1 when the database answered this scrape.", 1)
        values["modelkeep_webhook_deliveries_pending"] = (
            "Webhook deliveries waiting for an attempt or being sent.",
            backlog.pending,
        )
        values["modelkeep_webhook_oldest_pending_seconds"] = (
            "Age of the oldest delivery not yet succeeded or given up.",
            backlog.oldest_pending_seconds,
        )
        values["modelkeep_outbox_events_unprocessed"] = (
            "Committed events not yet fanned out to webhooks and automation rules.",
            backlog.events_to_fan_out,
        )
    body, content_type = observability.exposition(iter(observability.gauges(values)))
    return Response(body, media_type=content_type)


class EventsController(Controller):
    path = "/events"

    @get("/")
    async def list_events(
        self,
        db: Database,
        after: QueryInt64 = 0,
        limit: int = 100,
        model: str | None = None,
        type: str | None = None,
    ) -> Page[EventOut]:
        """Events in commit order, optionally of one model or type. Poll with ``after`` = the last ``seq`` seen."""
        async with db.read() as session:
            rows = await events.list_after(session, after=after, limit=clamp_limit(limit), model=model, type=type)
            items = [
                EventOut(
                    seq=e.seq,
                    id=e.id,
                    type=e.type,
                    subject=e.subject,
                    actor=e.actor,
                    model=e.model,
                    data=e.data,
                    created_at=iso(e.created_at),
                    request_id=e.request_id,
                )
                for e in rows
            ]
        return Page(items=items, next=str(items[-1].seq) if len(items) == limit else None)


class AuditController(Controller):
    path = "/audit"
    guards = ADMIN

    @get("/")
    async def list_audit(
        self, db: Database, after: QueryInt64 = 0, limit: int = 100, action: str | None = None
    ) -> Page[AuditOut]:
        async with db.read() as session:
            rows = await audit.list_entries(session, action=action, after=after, limit=clamp_limit(limit))
            items = [
                AuditOut(
                    id=e.id,
                    action=e.action,
                    actor=e.actor,
                    target=e.target,
                    details=e.details,
                    created_at=iso(e.created_at),
                    request_id=e.request_id,
                )
                for e in rows
            ]
        return Page(items=items, next=str(items[-1].id) if len(items) == limit else None)
