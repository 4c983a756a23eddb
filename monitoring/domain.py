"""Tables of the monitoring package (on the registry's metadata, so one Alembic history covers all).

Everything is per model *version*: a baseline, the hourly buckets of production profiles, the checks. An alias
is resolved when rows arrive and when a check runs, so nothing ever mixes the rows of two versions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from registry.domain.base import Base, IntPK, Timestamp, UTCDateTime


class MonitorBaseline(Base):
    """The reference a version's production data is compared with: its schema and profile, set once."""

    __tablename__ = "monitor_baselines"

    id: Mapped[IntPK]
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), unique=True)
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    """``monitoring.profile.Schema.to_json()``: the monitored columns and their kinds, and the roles of the
    prediction, target, id and timestamp columns. Production batches are conformed to it."""
    profile: Mapped[bytes] = mapped_column(LargeBinary)
    """``TableProfile.to_bytes()`` of the reference data (sketches, not rows)."""
    rows: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64))
    """sha256 of the reference file as uploaded (its bytes are kept in the blob store under it)."""
    options_digest: Mapped[str] = mapped_column(String(64))
    """sha256 of the options that shaped the schema: the same file with the same options is the same baseline."""
    source: Mapped[str] = mapped_column(Text)
    """``upload``, or ``artifact:NAME:VERSION`` (set from a dataset artifact, or found through lineage)."""
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[Timestamp]


class MonitorBucket(Base):
    """Production rows of one version in one UTC hour, as one mergeable profile. Batches from any replica
    merge into the same row (see ``monitoring.service.ingest``)."""

    __tablename__ = "monitor_buckets"
    __table_args__ = (UniqueConstraint("model_version_id", "bucket_start"),)

    id: Mapped[IntPK]
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime())
    rows: Mapped[int] = mapped_column(BigInteger)
    profile: Mapped[bytes] = mapped_column(LargeBinary)
    sample_digest: Mapped[str | None] = mapped_column(String(64))
    """A bounded reservoir sample of the bucket's rows (Parquet, in the blob store), for reports."""
    batches: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class MonitorSpec(Base):
    """A model's monitor spec (YAML, kept verbatim); ``digest`` identifies its content."""

    __tablename__ = "monitor_specs"

    id: Mapped[IntPK]
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), unique=True)
    text: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class MonitorCheck(Base):
    """One drift check of a version's production rows in a window against its baseline. Immutable."""

    __tablename__ = "monitor_checks"
    __table_args__ = (
        Index("ix_monitor_checks_model_alias", "model_id", "alias", "id"),
        Index("ix_monitor_checks_version", "model_version_id", "id"),
    )

    id: Mapped[IntPK]
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(BigInteger)
    alias: Mapped[str | None] = mapped_column(String(128))
    """The alias the check followed (None: a check of a version by number, which raises no alerts)."""
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    rows: Mapped[int] = mapped_column(BigInteger)
    reference_rows: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(24))
    """``ok`` | ``drift`` | ``insufficient_data``"""
    drift_detected: Mapped[bool] = mapped_column(Boolean)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The report: ``model, version, window{start,end}, rows, reference_rows, drift_detected, columns[...]``."""
    spec_digest: Mapped[str | None] = mapped_column(String(64))
    alert: Mapped[str | None] = mapped_column(String(32))
    """The event this check raised (``drift.detected`` / ``drift.resolved``), if any."""
    report_status: Mapped[str | None] = mapped_column(String(16))
    """The HTML report: None (no rows sampled in the window: none can be built), ``pending`` (built on its first
    request), ``ready`` (kept in the blob store under ``report_digest``) or ``failed`` (tried again on the next
    request)."""
    report_digest: Mapped[str | None] = mapped_column(String(64))
    report_samples: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    """The digests of the window's bucket samples when the check ran: its report is built from exactly these."""
    origin: Mapped[str] = mapped_column(String(16))
    """``api`` or ``schedule``."""
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[Timestamp]


class MonitorRow(Base):
    """One production row that carried an id (the baseline's id column): where late labels join. Kept only for
    versions whose baseline names an id column, and only the id, the hour it fell in and its prediction."""

    __tablename__ = "monitor_rows"
    __table_args__ = (
        UniqueConstraint("model_version_id", "row_id"),
        Index("ix_monitor_rows_version_bucket", "model_version_id", "bucket_start"),
    )

    id: Mapped[IntPK]
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    row_id: Mapped[str] = mapped_column(String(256))
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime())
    prediction: Mapped[Any] = mapped_column(JSON, nullable=True)
    """The value of the baseline's prediction column (None without one, or when the row had none)."""
    created_at: Mapped[Timestamp]


class MonitorLabel(Base):
    """A label that arrived after its prediction, joined to production rows by id."""

    __tablename__ = "monitor_labels"
    __table_args__ = (UniqueConstraint("model_version_id", "row_id"),)

    id: Mapped[IntPK]
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    row_id: Mapped[str] = mapped_column(String(256))
    label: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[Timestamp]
