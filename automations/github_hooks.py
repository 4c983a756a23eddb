"""GitHub's own webhooks (``POST /api/v1/hooks/github``): verified, deduplicated, turned into outbox events.

A ``pull_request`` (opened, synchronize, reopened) or a ``push`` names a commit. Each model version registered
from that commit (its run's ``git_commit``) gets a ``github.pull_request`` / ``github.push`` event, so a rule
can act on it ("gate the version registered from this head SHA"), with the commit and pull request in the
event data. A delivery that names no registered commit records nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from automations.domain import GitHubDelivery
from registry.domain.base import utcnow
from registry.domain.models import ModelVersion, RegisteredModel
from registry.domain.runs import Run
from registry.errors import InvalidInput
from registry.services import events
from registry.services._sql import upsert

EVENT_TYPES = ("github.pull_request", "github.push")
"""Outbox event types a GitHub webhook records (rules may trigger on them)."""
PULL_REQUEST_ACTIONS = ("opened", "synchronize", "reopened")
KEEP_DELIVERIES = timedelta(days=8)
"""GitHub lets a delivery be redelivered for 3 days (GitHub Enterprise Server 3.16+: 7); a day more for margin."""
MAX_VERSIONS = 20
"""Versions one delivery may announce (the newest registered from the commit)."""
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_DELIVERY = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def verify(secrets: Iterable[str], body: bytes, signature: str | None) -> bool:
    """Whether ``X-Hub-Signature-256`` (``sha256=<hex HMAC-SHA256 of the body>``) matches one of ``secrets``.

    Constant-time comparison, and every secret is tried even after a match, so the time taken says nothing
    about which secret (or how much of a signature) was right."""
    if not signature or not signature.startswith("sha256="):
        return False
    given = signature.removeprefix("sha256=").strip().lower().encode()
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
        matched |= hmac.compare_digest(expected, given)
    return matched


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a delivery led to, as the response says it."""

    status: str
    """``accepted`` (events recorded, maybe none), ``ignored`` (an event or action not acted on), ``pong``."""
    reason: str | None = None
    events: list[str] = field(default_factory=list)
    """Ids of the outbox events recorded."""
    duplicate: bool = False
    """This delivery id was received before: nothing was recorded again, and this is the first outcome."""

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "events": self.events, "duplicate": self.duplicate}


async def receive(session: AsyncSession, *, delivery: str, event: str, payload: Any) -> Outcome:
    """Act on one verified delivery, once per ``delivery`` id.

    The delivery row and the events it records are written in one transaction. Two copies arriving together:
    on PostgreSQL the second insert waits for the first transaction and then inserts nothing, and that copy
    answers with the first's outcome; SQLite runs one write transaction at a time. Raises InvalidInput for a
    malformed delivery id or payload."""
    if not _DELIVERY.match(delivery):
        raise InvalidInput("X-GitHub-Delivery must be 1-64 letters, digits or '-'", field="X-GitHub-Delivery")
    if not isinstance(payload, dict):
        raise InvalidInput("the payload is not a JSON object")
    inserted = await session.execute(
        upsert(session, GitHubDelivery)
        .values(delivery_id=delivery, event=event[:64], outcome={}, received_at=utcnow())
        .on_conflict_do_nothing()
    )
    if not getattr(inserted, "rowcount", 0):
        earlier = await session.scalar(select(GitHubDelivery).where(GitHubDelivery.delivery_id == delivery))
        first = dict(earlier.outcome) if earlier is not None else {}
        return Outcome(
            status=str(first.get("status", "accepted")),
            reason=first.get("reason"),
            events=list(first.get("events", [])),
            duplicate=True,
        )
    # Forgotten here rather than by a scheduled job: receiving is the only thing that adds rows, so the table
    # stays bounded by the deliveries of the last KEEP_DELIVERIES whatever runs elsewhere.
    await session.execute(delete(GitHubDelivery).where(GitHubDelivery.received_at < utcnow() - KEEP_DELIVERIES))
    outcome = await _act(session, event=event, payload=payload, delivery=delivery)
    row = await session.scalar(select(GitHubDelivery).where(GitHubDelivery.delivery_id == delivery))
    assert row is not None
    row.outcome = outcome.to_dict()
    await session.flush()
    return outcome


def _text(payload: dict[str, Any], *path: str) -> str:
    value: Any = payload
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"the {'.'.join(path)} of the payload is missing or not a string")
    return value


async def _act(session: AsyncSession, *, event: str, payload: dict[str, Any], delivery: str) -> Outcome:
    if event == "ping":
        return Outcome(status="pong", reason=str(payload.get("zen") or "") or None)
    if event not in ("pull_request", "push"):
        return Outcome(status="ignored", reason=f"the {event!r} event is not acted on (pull_request, push)")
    repository = _text(payload, "repository", "full_name")
    data: dict[str, Any] = {"repository": repository, "delivery": delivery}
    if event == "pull_request":
        action = _text(payload, "action")
        if action not in PULL_REQUEST_ACTIONS:
            return Outcome(status="ignored", reason=f"pull_request {action!r} is not acted on")
        sha = _text(payload, "pull_request", "head", "sha")
        number = (payload.get("pull_request") or {}).get("number")
        if not isinstance(number, int) or isinstance(number, bool):
            raise InvalidInput("the pull_request.number of the payload is missing or not a number")
        data |= {"action": action, "pr_number": number, "ref": (payload["pull_request"].get("head") or {}).get("ref")}
    else:
        sha = _text(payload, "after")
        if payload.get("deleted") or set(sha) == {"0"}:
            return Outcome(status="ignored", reason="a deleted branch or tag names no commit")
        data |= {"action": "push", "pr_number": None, "ref": payload.get("ref")}
    if not _SHA.match(sha):
        raise InvalidInput("the commit SHA of the payload is not 40 (or 64) hex digits")
    data["commit_sha"] = sha
    sender = payload.get("sender")
    login = sender.get("login") if isinstance(sender, dict) else None
    actor = f"github:{login or 'webhook'}"[:128]
    recorded = []
    for model, version in await versions_from(session, sha=sha):
        made = await events.record(
            session,
            type=f"github.{event}",
            subject=f"github/{repository}/commits/{sha}",
            actor=actor,
            model=model,
            data={"model": model, "version": version, **data},
        )
        recorded.append(made.id)
    if not recorded:
        return Outcome(status="accepted", reason=f"no model version was registered from commit {sha[:12]}")
    return Outcome(status="accepted", events=recorded)


async def versions_from(session: AsyncSession, *, sha: str) -> list[tuple[str, int]]:
    """(model, version) of the versions whose run recorded ``sha`` as its git commit, newest first."""
    rows = await session.execute(
        select(RegisteredModel.name, ModelVersion.version)
        .join(ModelVersion, ModelVersion.model_id == RegisteredModel.id)
        .join(Run, Run.id == ModelVersion.run_id)
        .where(Run.git_commit == sha)
        .order_by(ModelVersion.id.desc())
        .limit(MAX_VERSIONS)
    )
    return [(str(name), int(version)) for name, version in rows.all()]
