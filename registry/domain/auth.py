"""API tokens (stored hashed) and the audit log of security-relevant actions."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from registry.domain.base import Base, IntPK, Timestamp, UTCDateTime


class Role(IntEnum):
    """Ordered: a role may do everything the roles below it may."""

    reader = 1
    writer = 2
    maintainer = 3
    admin = 4


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[IntPK]
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    """Public, indexed part of the token, used to find the row; the rest is only ever stored hashed."""
    token_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[Timestamp]
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[IntPK]
    action: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[Timestamp]
    request_id: Mapped[str | None] = mapped_column(String(64))
    """The API request that made the change (``X-Request-ID``), if one did."""
