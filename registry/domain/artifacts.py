"""Blobs (content-addressed bytes), run files, named artifact versions (datasets ...) and run inputs."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from registry.domain.base import Base, IntPK, Timestamp

ARTIFACT_KINDS = ("model", "dataset", "eval", "other")


class Blob(Base):
    """A row exists only once the bytes under ``sha256`` are durable in the blob store."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[Timestamp]


class RunFile(Base):
    """A file in a run's artifact tree. Re-uploading a path points it at a new blob."""

    __tablename__ = "run_files"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[Timestamp]


class ArtifactVersion(Base):
    """A named, numbered, immutable manifest (``kind`` dataset, eval, model, other)."""

    __tablename__ = "artifact_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[IntPK]
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    source_path: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    """sha256 over the sorted manifest: equal content, equal digest."""
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[Timestamp]


class ArtifactFile(Base):
    __tablename__ = "artifact_files"

    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifact_versions.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    size: Mapped[int] = mapped_column(BigInteger)


class RunInput(Base):
    """Lineage: this run consumed that artifact version (a dataset, usually)."""

    __tablename__ = "run_inputs"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifact_versions.id"), primary_key=True)
    context: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[Timestamp]
