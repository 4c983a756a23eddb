"""Health, events feed and audit log."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get

from registry.api.security import ADMIN
from registry.api.v1._common import Page, QueryInt64, clamp_limit, iso
from registry.db import Database
from registry.services import audit, events


class EventOut(msgspec.Struct):
    seq: int
    id: str
    type: str
    subject: str
    actor: str
    model: str | None
    data: dict[str, Any]
    created_at: str | None


class AuditOut(msgspec.Struct):
    id: int
    action: str
    actor: str
    target: str
    details: dict[str, Any]
    created_at: str | None


@get("/health")
async def health(db: Database) -> dict[str, str]:
    await db.ping()
    return {"status": "ok", "database": db.dialect}


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
                )
                for e in rows
            ]
        return Page(items=items, next=str(items[-1].id) if len(items) == limit else None)
