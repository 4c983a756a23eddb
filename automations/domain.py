"""Tables of the automations package (on the registry's metadata, so one Alembic history covers all)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from registry.domain.base import Base, IntPK, Timestamp, UTCDateTime


class Webhook(Base):
    """A subscriber endpoint. ``secret`` signs every request; during a rotation the previous secret signs
    too until ``previous_secret_expires_at``."""

    __tablename__ = "webhooks"

    id: Mapped[IntPK]
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    event_types: Mapped[list[str]] = mapped_column(JSON)
    model: Mapped[str | None] = mapped_column(String(256))
    """Only events of this model (None: every model and model-less events)."""
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class Delivery(Base):
    """One event to one webhook: its retry state. Attempts are kept in ``delivery_attempts``."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_seq", "webhook_id"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_webhook", "webhook_id", "status"),
    )

    id: Mapped[IntPK]
    event_seq: Mapped[int] = mapped_column(ForeignKey("events.seq"))
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """pending | delivering | succeeded | failed | cancelled"""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_by: Mapped[str | None] = mapped_column(String(128))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_delivery", "delivery_id", "attempt_no"),)

    id: Mapped[IntPK]
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    attempt_no: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)


class OutboxCursor(Base):
    """How far each consumer of the event outbox has got (``seq``), advanced in the same transaction as
    the work it did for those events."""

    __tablename__ = "outbox_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)


class SchedulerSlot(Base):
    """A scheduled job's run for one time slot; the primary key makes the claim exclusive cluster-wide."""

    __tablename__ = "scheduler_slots"

    job: Mapped[str] = mapped_column(String(128), primary_key=True)
    slot_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    claimed_by: Mapped[str] = mapped_column(String(128))
    claimed_at: Mapped[Timestamp]
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(Text)


class AutomationRule(Base):
    """ "On <event> [for <model>] [if <conditions>] do <action>"; acts with ``role`` as ``rule:<name>``, and
    only while ``token_id`` (the token that applied it last) is neither revoked nor expired."""

    __tablename__ = "automation_rules"

    id: Mapped[IntPK]
    name: Mapped[str] = mapped_column(String(128), unique=True)
    on_event: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(256))
    conditions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    action: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    role: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(128))
    token_id: Mapped[int | None] = mapped_column(BigInteger)
    """The API token that applied the rule last (None: applied without one, so it does not act). Not a
    foreign key: tokens are revoked, never deleted, and a missing one stops the rule just the same."""
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class AutomationJob(Base):
    """Work to do off the request path (run a gate, promote), claimed like deliveries."""

    __tablename__ = "automation_jobs"
    __table_args__ = (
        Index("ix_automation_jobs_due", "status", "next_attempt_at"),
        UniqueConstraint("rule_id", "event_seq"),
    )

    id: Mapped[IntPK]
    kind: Mapped[str] = mapped_column(String(32))
    """run_gate | promote"""
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("automation_rules.id", ondelete="SET NULL"))
    event_seq: Mapped[int | None] = mapped_column(BigInteger)
    """The event that triggered it (with ``rule_id``: each rule acts once per event)."""
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """pending | running | succeeded | failed"""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_by: Mapped[str | None] = mapped_column(String(128))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class HookTrigger(Base):
    """A named secret that may sign inbound requests (Standard Webhooks) asking for gate runs."""

    __tablename__ = "hook_triggers"

    id: Mapped[IntPK]
    name: Mapped[str] = mapped_column(String(128), unique=True)
    secret: Mapped[str] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(256))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[Timestamp]


class HookMessage(Base):
    """A signed inbound request that was acted on, by its ``webhook-id``: the same id from the same trigger
    again (a replay, or the sender retrying) gets the job the first request queued instead of a new one."""

    __tablename__ = "hook_messages"
    __table_args__ = (
        UniqueConstraint("trigger_id", "message_id"),
        Index("ix_hook_messages_received_at", "received_at"),
    )

    id: Mapped[IntPK]
    trigger_id: Mapped[int] = mapped_column(ForeignKey("hook_triggers.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(256))
    job_id: Mapped[int] = mapped_column(ForeignKey("automation_jobs.id", ondelete="CASCADE"))
    received_at: Mapped[Timestamp]


class GitHubDelivery(Base):
    """A webhook delivery from GitHub, by its ``X-GitHub-Delivery`` id, and what it led to (``outcome``).

    GitHub keeps the id when a delivery is redelivered, and its signature has no timestamp, so a captured request
    verifies forever: the unique id is what makes a redelivery or a replay record nothing twice (it is answered
    with the first outcome). Rows older than ``github_hooks.KEEP_DELIVERIES`` are forgotten."""

    __tablename__ = "github_deliveries"
    __table_args__ = (Index("ix_github_deliveries_received_at", "received_at"),)

    id: Mapped[IntPK]
    delivery_id: Mapped[str] = mapped_column(String(64), unique=True)
    event: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[Timestamp]
