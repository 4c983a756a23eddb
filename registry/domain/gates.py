"""Gate policies (what a version must pass to take an alias) and recorded gate runs (the evidence)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from registry.domain.base import Base, IntPK, Timestamp


class GatePolicy(Base):
    __tablename__ = "gate_policies"
    __table_args__ = (UniqueConstraint("model_id", "alias"),)

    id: Mapped[IntPK]
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(128))
    spec: Mapped[str] = mapped_column(Text)
    """The YAML text as given (kept verbatim for display); ``spec_digest`` identifies its content."""
    spec_digest: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class GateRun(Base):
    """One evaluation of a version against a gate spec. Immutable once written."""

    __tablename__ = "gate_runs"
    __table_args__ = (
        Index("ix_gate_runs_model_version", "model_id", "version"),
        Index("ix_gate_runs_testset", "testset_digest"),
    )

    id: Mapped[IntPK]
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(BigInteger)
    baseline_version: Mapped[int | None] = mapped_column(BigInteger)
    spec_digest: Mapped[str] = mapped_column(String(64))
    spec: Mapped[str] = mapped_column(Text)
    data_digest: Mapped[str] = mapped_column(String(64))
    """Digest of the candidate's evaluation table."""
    testset_digest: Mapped[str] = mapped_column(String(64))
    """Digest of the examples (ids and labels) only: equal across candidates evaluated on the same test set,
    so the registry can count how often verdicts were revealed on it."""
    reveal: Mapped[int] = mapped_column(BigInteger)
    """This run's reveal number on its test set (1 = first)."""
    verdict: Mapped[str] = mapped_column(String(16))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[Timestamp]
