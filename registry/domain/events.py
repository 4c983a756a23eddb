"""Outbox: one row per state change, written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from registry.domain.base import Base, IntPK, Timestamp


class Event(Base):
    __tablename__ = "events"

    seq: Mapped[IntPK]
    """Increases in commit order (see ``registry.services.events.record``)."""
    id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str | None] = mapped_column(String(256), index=True)
    subject: Mapped[str] = mapped_column(String(512))
    actor: Mapped[str] = mapped_column(String(128))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[Timestamp]
    request_id: Mapped[str | None] = mapped_column(String(64))
    """The API request that recorded it (``X-Request-ID``), if one did."""
