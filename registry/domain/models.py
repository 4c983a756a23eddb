"""Registered models, their numbered versions (with manifest snapshots), aliases and promotion history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from registry.domain.base import Base, IntPK, Timestamp, UTCDateTime


class RegisteredModel(Base):
    __tablename__ = "registered_models"

    id: Mapped[IntPK]
    name: Mapped[str] = mapped_column(String(256), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    # Last version number handed out. Only ever increases, so deleted versions are never renumbered;
    # it is read and bumped under a row lock, which makes concurrent creates gapless.
    last_version: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class ModelTag(Base):
    __tablename__ = "model_tags"

    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[IntPK]
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    source: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="READY")
    stage: Mapped[str] = mapped_column(String(16), default="None")
    description: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    """sha256 over the sorted manifest snapshot."""
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class VersionFile(Base):
    """The version's own manifest snapshot, taken at registration; later run-file changes do not touch it."""

    __tablename__ = "version_files"

    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    size: Mapped[int] = mapped_column(BigInteger)


class VersionTag(Base):
    __tablename__ = "version_tags"

    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Alias(Base):
    __tablename__ = "aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_by: Mapped[str] = mapped_column(String(128), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Promotion(Base):
    """Append-only history of alias moves. Version numbers, not foreign keys: history outlives deletes."""

    __tablename__ = "promotions"
    __table_args__ = (Index("ix_promotions_model_alias", "model_id", "alias", "id"),)

    id: Mapped[IntPK]
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(128))
    from_version: Mapped[int | None] = mapped_column(BigInteger)
    to_version: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))
    """``promote``, ``rollback`` or ``remove``."""
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    gate_run_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[Timestamp]
