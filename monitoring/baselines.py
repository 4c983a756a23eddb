"""Baselines: the reference data a version's production rows are compared with, profiled once.

A baseline is set once per version (production profiles are conformed to its schema), from an uploaded
Parquet or CSV file, from a dataset artifact version, or, for a version without one, from the dataset its
run consumed (lineage). The reference's bytes are kept in the blob store under their sha256. Reading and
profiling a reference (:func:`profile_reference`) run in a profiling worker (:mod:`monitoring.workers`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from monitoring import workers
from monitoring.domain import MonitorBaseline
from monitoring.service import DATA_SUFFIXES, get_version, profile_error, read_file
from registry.db import Database
from registry.domain.artifacts import ArtifactFile, ArtifactVersion, RunInput
from registry.domain.auth import Role
from registry.domain.models import ModelVersion, RegisteredModel
from registry.errors import AlreadyExists, InvalidInput, NotFound
from registry.services import artifacts, audit, models, versions
from registry.services.auth import Actor, require
from registry.storage import BlobStore
from registry.storage.spool import spool

if TYPE_CHECKING:
    import pyarrow as pa

    from monitoring.profile import Schema, TableProfile


@dataclass(frozen=True, slots=True)
class BaselineOptions:
    """How the reference's columns are read (``infer_schema``'s options)."""

    prediction: str | None = None
    target: str | None = None
    id: str | None = None
    timestamp: str | None = None
    columns: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numerical: tuple[str, ...] = ()

    def digest(self) -> str:
        fields = {name: getattr(self, name) for name in self.__slots__}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ProfiledReference:
    """A reference as a worker returns it: its schema, its serialised profile, and the options it was read by
    (those given, or for lineage those :func:`lineage_options` chose)."""

    schema: dict[str, Any]
    profile: bytes
    rows: int
    options: BaselineOptions


def profile_reference(path: str, fmt: str, options: BaselineOptions | None, empty: str) -> ProfiledReference:
    """Read a reference file, choose its schema and profile it. Runs in a profiling worker
    (:mod:`monitoring.workers`). ``options`` None: read by :func:`lineage_options`. InvalidInput for an empty
    (``empty`` says what) or unreadable file, and naming the column for a bad one.

    A Parquet reference is read one column at a time (:class:`_ParquetColumns`): choosing a column's kind and
    profiling it look at that column alone, so the result is the same as from the whole table, and the
    worker holds one column instead of the reference (a 1M x 25 reference read whole peaked at 550 MB)."""
    import pyarrow as pa

    table = _ParquetColumns.open(Path(path)) if fmt == "parquet" else None
    if table is None:  # CSV, or not readable as Parquet: read_file reads it whole, or says why it cannot
        table = read_file(Path(path), fmt)
    if table.num_rows == 0:
        raise InvalidInput(empty, code="empty_batch")
    options = options or lineage_options(table)
    try:
        schema, profile = _build_baseline(table, options)
    except (pa.ArrowException, OSError) as exc:  # a damaged column, met while reading it
        raise InvalidInput(f"cannot read the data as Parquet: {exc}", code="unreadable_data") from None
    return ProfiledReference(schema=schema.to_json(), profile=profile.to_bytes(), rows=profile.rows, options=options)


class _ParquetColumns:
    """A Parquet file as the part of a table that :func:`infer_schema` and :func:`profile_table` use (names,
    row count, schema, one column at a time), each column read when asked for and dropped after."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.schema = file.schema_arrow
        self.column_names: list[str] = list(self.schema.names)
        self.num_rows = int(file.metadata.num_rows)

    @classmethod
    def open(cls, path: Path) -> pa.Table | None:
        """The file's columns, typed as the table they stand for; None if it cannot be opened as Parquet, or
        has names a column selection cannot tell apart (duplicates, dotted names of nested fields)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            file = pq.ParquetFile(path)
        except (pa.ArrowException, OSError):
            return None
        names = file.schema_arrow.names
        if len(set(names)) != len(names) or any("." in name for name in names):
            return None
        return cast("pa.Table", cls(file))

    def column(self, name: str) -> pa.ChunkedArray:
        return self.file.read(columns=[name], use_threads=False).column(0)


def _build_baseline(table: pa.Table, options: BaselineOptions) -> tuple[Schema, TableProfile]:
    from monitoring.profile import ProfileError, infer_schema, profile_table

    try:
        schema = infer_schema(
            table,
            prediction=options.prediction,
            target=options.target,
            id=options.id,
            timestamp=options.timestamp,
            columns=options.columns,
            exclude=options.exclude,
            categorical=options.categorical,
            numerical=options.numerical,
        )
        if not schema.columns:
            raise InvalidInput("the reference has no column left to monitor", code="schema_mismatch")
        return schema, profile_table(table, schema)
    except ProfileError as exc:
        raise profile_error(exc, "reference data") from None


async def get_baseline(session: AsyncSession, *, model: RegisteredModel, version: ModelVersion) -> MonitorBaseline:
    found = await session.scalar(select(MonitorBaseline).where(MonitorBaseline.model_version_id == version.id))
    if found is None:
        raise NotFound(
            f"{model.name} v{version.version} has no monitoring baseline: set one with "
            f"`registry monitor baseline set {model.name} {version.version} --data REFERENCE`",
            code="no_baseline",
        )
    return found


def _same_or_conflict(
    existing: MonitorBaseline, *, model: str, version: int, digest: str, options: BaselineOptions
) -> MonitorBaseline:
    if existing.digest == digest and existing.options_digest == options.digest():
        return existing  # the same reference again: nothing changes
    raise AlreadyExists(
        f"{model} v{version} already has a baseline ({existing.source}, {existing.rows} rows, "
        f"sha256 {existing.digest[:12]}); a baseline is set once, since production profiles are "
        "conformed to it. Register a new version for new reference data",
        code="baseline_exists",
    )


async def _store_baseline(
    db: Database,
    store: BlobStore,
    *,
    model_name: str,
    version: int,
    made: ProfiledReference,
    digest: str,
    blob: Path | None,
    source: str,
    actor: Actor,
) -> MonitorBaseline:
    options = made.options
    size = blob.stat().st_size if blob is not None else 0
    if blob is not None:
        await store.put(digest, blob)  # before the row: a crash leaves an unreferenced object, never a dangling row
    async with db.write() as session:
        model = await models.lock(session, name=model_name)
        found = await versions.get(session, model=model, version=version)
        existing = await session.scalar(select(MonitorBaseline).where(MonitorBaseline.model_version_id == found.id))
        if existing is not None:
            return _same_or_conflict(existing, model=model.name, version=version, digest=digest, options=options)
        if blob is not None:
            await artifacts.record_blob(session, sha256=digest, size=size, store=store)
        baseline = MonitorBaseline(
            model_version_id=found.id,
            schema=made.schema,
            profile=made.profile,
            rows=made.rows,
            digest=digest,
            options_digest=options.digest(),
            source=source,
            created_by=actor.name,
        )
        session.add(baseline)
        await session.flush()
        data = {"model": model.name, "version": version, "rows": made.rows, "digest": digest, "source": source}
        await audit.log(
            session, action="monitor.baseline_set", actor=actor.name, target=f"{model.name}/{version}", details=data
        )
    return baseline


async def set_baseline(
    db: Database,
    store: BlobStore,
    *,
    model_name: str,
    version: int,
    chunks: AsyncIterable[bytes],
    fmt: str,
    options: BaselineOptions,
    actor: Actor,
    tmp_dir: Path,
    max_bytes: int,
) -> MonitorBaseline:
    """Profile an uploaded reference (Parquet or CSV) and bind it to the version, once; its bytes are kept in
    the blob store. Writers. Raises AlreadyExists when the version has a different baseline."""
    require(actor, Role.writer, action="setting a monitoring baseline")
    if fmt == "jsonl":
        raise InvalidInput("a baseline is Parquet or CSV", code="unsupported_media_type", field="content-type")
    async with db.read() as session:  # fail fast, before reading any bytes
        await get_version(session, model_name=model_name, version=version)
    spooled = await spool(chunks, tmp_dir=tmp_dir, max_bytes=max_bytes, direct=False)
    try:
        async with db.read() as session:  # set already: the same bytes and options again are a no-op, else 409
            model, found = await get_version(session, model_name=model_name, version=version)
            existing = await session.scalar(select(MonitorBaseline).where(MonitorBaseline.model_version_id == found.id))
        if existing is not None:
            return _same_or_conflict(
                existing, model=model.name, version=version, digest=spooled.sha256, options=options
            )
        made = await workers.run(profile_reference, str(spooled.path), fmt, options, "the reference has no rows")
        return await _store_baseline(
            db,
            store,
            model_name=model_name,
            version=version,
            made=made,
            digest=spooled.sha256,
            blob=spooled.path,
            source="upload",
            actor=actor,
        )
    finally:
        spooled.discard()


async def _artifact_table(session: AsyncSession, artifact: ArtifactVersion) -> tuple[str, str]:
    """The one data file (``.parquet`` or ``.csv``) of a dataset artifact version: ``(sha256, format)``."""
    files = list(await session.scalars(select(ArtifactFile).where(ArtifactFile.artifact_id == artifact.id)))
    tables = [f for f in files if Path(f.path).suffix.lower() in (".parquet", ".pq", ".csv")]
    if len(tables) != 1:
        listed = ", ".join(f.path for f in tables) or "none"
        raise InvalidInput(
            f"artifact {artifact.name}:{artifact.version} must hold exactly one .parquet or .csv file (found {listed})",
            field="artifact",
        )
    return tables[0].sha256, DATA_SUFFIXES[Path(tables[0].path).suffix.lower()]


async def baseline_from_artifact(
    db: Database,
    store: BlobStore,
    *,
    model_name: str,
    version: int,
    artifact: str,
    options: BaselineOptions,
    actor: Actor,
    tmp_dir: Path,
) -> MonitorBaseline:
    """Bind a dataset artifact version (``NAME:VERSION``) as the version's baseline."""
    require(actor, Role.writer, action="setting a monitoring baseline")
    name, _, number = artifact.rpartition(":")
    if not name or not number.isdigit():
        raise InvalidInput(f"artifact {artifact!r}: use NAME:VERSION (for example train-set:3)", field="artifact")
    async with db.read() as session:
        await get_version(session, model_name=model_name, version=version)
        found = await artifacts.get_version(session, name=name, version=int(number))
        sha256, fmt = await _artifact_table(session, found)
    return await _baseline_from_blob(
        db, store, model_name=model_name, version=version, sha256=sha256, fmt=fmt, options=options,
        source=f"artifact:{found.name}:{found.version}", actor=actor, tmp_dir=tmp_dir,
    )  # fmt: skip


async def _baseline_from_blob(
    db: Database,
    store: BlobStore,
    *,
    model_name: str,
    version: int,
    sha256: str,
    fmt: str,
    options: BaselineOptions | None,
    source: str,
    actor: Actor,
    tmp_dir: Path,
) -> MonitorBaseline:
    """``options`` None: read by :func:`lineage_options`."""
    spooled = await spool(store.stream(sha256), tmp_dir=tmp_dir, max_bytes=2**62, direct=False)
    try:
        made = await workers.run(profile_reference, str(spooled.path), fmt, options, f"{source} has no rows")
    finally:
        spooled.discard()
    return await _store_baseline(
        db, store, model_name=model_name, version=version, made=made, digest=sha256, blob=None, source=source,
        actor=actor,
    )  # fmt: skip


def lineage_options(table: pa.Table) -> BaselineOptions:
    """Options for a dataset found through lineage, where nobody named the columns' roles: the first column of
    times is the timestamp, other times are left out (they are never features), the rest is inferred."""
    import pyarrow as pa

    times = [f.name for f in table.schema if pa.types.is_temporal(f.type)]
    return BaselineOptions(timestamp=times[0] if times else None, exclude=tuple(times[1:]))


async def lineage_dataset(session: AsyncSession, *, version: ModelVersion) -> ArtifactVersion | None:
    """The dataset artifact version the version's run consumed (the newest, if it consumed several)."""
    if version.run_id is None:
        return None
    found = await session.scalar(
        select(ArtifactVersion)
        .join(RunInput, RunInput.artifact_id == ArtifactVersion.id)
        .where(RunInput.run_id == version.run_id, ArtifactVersion.kind == "dataset")
        .order_by(ArtifactVersion.id.desc())
        .limit(1)
    )
    return found


async def baseline_or_lineage(
    db: Database, store: BlobStore | None, *, model_name: str, version: int, tmp_dir: Path
) -> MonitorBaseline:
    """The version's baseline; without one, the dataset its run consumed becomes it (when lineage has one, and
    a blob store is at hand). Raises NotFound ``no_baseline`` otherwise."""
    async with db.read() as session:
        model, found = await get_version(session, model_name=model_name, version=version)
        try:
            return await get_baseline(session, model=model, version=found)
        except NotFound:
            dataset = await lineage_dataset(session, version=found) if store is not None else None
            if dataset is None:
                raise
            sha256, fmt = await _artifact_table(session, dataset)
    assert store is not None
    lineage = Actor(name="monitor (lineage)", role=Role.writer)
    return await _baseline_from_blob(
        db, store, model_name=model_name, version=version, sha256=sha256, fmt=fmt, options=None,
        source=f"artifact:{dataset.name}:{dataset.version}", actor=lineage, tmp_dir=tmp_dir,
    )  # fmt: skip
