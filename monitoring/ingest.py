"""Production batches in: conformed to the version's baseline schema, profiled per UTC hour, merged.

Rows are tied to the version that served them (an alias is resolved when they arrive) and kept as mergeable
profiles, one per version and hour; batches from any replica merge into the same bucket. Reading, conforming
and profiling a batch (:func:`profile_batch`) run in a profiling worker (:mod:`monitoring.workers`); the
merge into the stored buckets runs here, in one short transaction.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from monitoring import baselines, labels, workers
from monitoring.domain import MonitorBucket
from monitoring.service import MAX_BATCH_BYTES, MAX_FUTURE, profile_error, read_file, resolve
from registry import observability
from registry.db import Database
from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.errors import InvalidInput
from registry.services import artifacts
from registry.services._sql import upsert
from registry.services.auth import Actor, require
from registry.storage import BlobStore
from registry.storage.spool import spool

if TYPE_CHECKING:
    import pyarrow as pa

    from monitoring.profile import Schema

SAMPLE_ROWS = 1000
"""Rows kept per bucket (a uniform reservoir sample) for the reports that need rows."""


@dataclass(frozen=True, slots=True)
class Ingested:
    model: str
    version: int
    alias: str | None
    rows: int
    buckets: list[tuple[datetime, int]] = field(default_factory=list)
    """``(bucket start, rows of this batch in it)``, oldest first."""


def _event_times(table: pa.Table, schema: Schema, default: datetime, now: datetime) -> Any:
    """Microseconds since the epoch per row: the timestamp column where the batch has it (a missing value takes
    ``default``), else ``default``. InvalidInput naming the column and row for times too far ahead."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    fallback = int(default.timestamp() * 1_000_000)
    column = schema.timestamp
    if column is None or column not in table.column_names:
        return np.full(table.num_rows, fallback, dtype=np.int64)
    values = table.column(column)
    try:
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            values = pc.cast(values, pa.timestamp("us", tz="UTC"))
        if not pa.types.is_timestamp(values.type):
            raise pa.ArrowInvalid(f"type {values.type}")
        micros = pc.cast(pc.cast(values, pa.timestamp("us", tz="UTC")), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InvalidInput(
            f"column {column!r} (the timestamp) must hold times (ISO 8601 text or a timestamp type)",
            code="schema_mismatch",
            field=column,
        ) from None
    stamps = np.asarray(micros.fill_null(fallback).to_numpy(zero_copy_only=False), dtype=np.int64)
    limit = int((now + MAX_FUTURE).timestamp() * 1_000_000)
    ahead = np.flatnonzero(stamps > limit)
    if ahead.size:
        row = int(ahead[0])
        when = datetime.fromtimestamp(stamps[row] / 1_000_000, UTC).isoformat()
        raise InvalidInput(
            f"row {row}: {column} {when} is more than {int(MAX_FUTURE.total_seconds() // 60)} minutes in the future "
            f"({ahead.size} such rows); check the sender's clock and time zone",
            code="future_timestamp",
            field=column,
            row=row,
        )
    return stamps


@dataclass(frozen=True, slots=True)
class Part:
    """The rows of one batch in one bucket, as a worker returns them: their profile and a bounded sample."""

    start: datetime
    rows: int
    profile: bytes
    """A serialised :class:`monitoring.profile.TableProfile`."""
    sample: bytes | None
    """A uniform sample of at most SAMPLE_ROWS of the rows, as Parquet (None: not asked for)."""


@dataclass(frozen=True, slots=True)
class ProfiledBatch:
    rows: int
    parts: list[Part]
    """One per hourly bucket the batch has rows in, oldest first."""
    kept: list[dict[str, Any]]
    """The rows to keep for late labels (see :func:`labels.row_ids`)."""


def profile_batch(
    path: str, fmt: str, schema_json: dict[str, Any], default: datetime, now: datetime, seed: int, samples: bool
) -> ProfiledBatch:
    """Read a spooled batch, conform it to the baseline's schema and profile it per hourly bucket. Runs in a
    profiling worker (:mod:`monitoring.workers`): a file path and small parameters in, bytes out.

    InvalidInput for an empty or unreadable body, a schema mismatch (naming the column) and times too far
    ahead (naming the row)."""
    import numpy as np
    import pyarrow.parquet as pq

    from monitoring.labels import row_ids
    from monitoring.profile import ProfileError, Schema, conform, profile_table, reservoir

    table = read_file(Path(path), fmt)
    if table.num_rows == 0:
        raise InvalidInput("the batch has no rows", code="empty_batch")
    schema = Schema.from_json(schema_json)
    stamps = _event_times(table, schema, default, now)
    try:
        conformed = conform(table, schema)
    except ProfileError as exc:
        raise profile_error(exc, "the batch does not match the baseline") from None
    hour = 3_600_000_000
    keys = stamps // hour
    kept = row_ids(table, schema, keys)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    ordered = conformed.take(order) if not np.all(order[:-1] < order[1:]) else conformed
    del conformed
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    parts = []
    for start, end in zip(starts, ends, strict=True):
        bucket = datetime.fromtimestamp(int(keys[start]) * 3600, UTC)
        rows = ordered.slice(int(start), int(end - start))
        try:
            profile = profile_table(rows, schema)
        except ProfileError as exc:
            raise profile_error(exc, "the batch does not match the baseline") from None
        sample = None
        if samples:
            sink = io.BytesIO()
            pq.write_table(reservoir(rows, SAMPLE_ROWS, seed), sink)
            sample = sink.getvalue()
        parts.append(Part(bucket, profile.rows, profile.to_bytes(), sample))
    return ProfiledBatch(rows=table.num_rows, parts=parts, kept=kept)


async def merge_bucket(
    session: AsyncSession, *, version_id: int, start: datetime, rows: int, profile: bytes, sample: Sample | None = None
) -> None:
    """Merge one profile (``rows`` rows, serialised) into the version's bucket at ``start``.

    Safe with concurrent writers on every replica: the insert either creates the row or, on PostgreSQL, waits
    for a concurrent insert of the same bucket to commit and then does nothing; the row is then read under
    ``FOR UPDATE``, so two merges of one bucket run one after the other and neither is lost. SQLite has one
    writer at a time, so the same steps hold there.

    ``sample`` replaces the bucket's sample only if the bucket still holds the one it was merged with; when a
    concurrent batch replaced it meanwhile, theirs stays (the sample leaves this batch out, and stays bounded
    and uniform over the rest)."""
    from monitoring.profile import TableProfile

    if sample is not None:
        await artifacts.record_blob(session, sha256=sample.digest, size=sample.size)

    now = utcnow()
    inserted = await session.execute(
        upsert(session, MonitorBucket)
        .values(
            model_version_id=version_id,
            bucket_start=start,
            rows=rows,
            profile=profile,
            sample_digest=sample.digest if sample is not None else None,
            batches=1,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["model_version_id", "bucket_start"])
    )
    if getattr(inserted, "rowcount", 0):
        return
    row = await session.scalar(
        select(MonitorBucket)
        .where(MonitorBucket.model_version_id == version_id, MonitorBucket.bucket_start == start)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None  # it conflicted, so it exists; rows are never deleted while their version lives
    stored = row.profile

    def merge() -> tuple[int, bytes]:
        merged = TableProfile.from_bytes(stored).merge(TableProfile.from_bytes(profile))
        return merged.rows, merged.to_bytes()

    row.rows, row.profile = await anyio.to_thread.run_sync(merge)
    if sample is not None and row.sample_digest == sample.merged_with:
        row.sample_digest = sample.digest
    row.batches += 1
    row.updated_at = now


async def ingest(
    db: Database,
    store: BlobStore | None,
    *,
    model_name: str,
    alias: str | None,
    version: int | None,
    chunks: AsyncIterable[bytes],
    fmt: str,
    at: datetime | None,
    actor: Actor,
    tmp_dir: Path,
    max_bytes: int,
) -> Ingested:
    """Take a batch of production rows for the version ``alias`` points at now (or ``version``): conform it to
    the version's baseline schema, profile it per hourly bucket (by the timestamp column, else ``at``, else
    now) and merge the profiles into the stored buckets, all in one transaction. Writers.

    Stores nothing on any error: a schema mismatch (naming the column), an empty or unreadable body, times
    more than MAX_FUTURE ahead (naming the row) are InvalidInput; a body past the limit PayloadTooLarge."""
    require(actor, Role.writer, action="sending production data")
    now = utcnow()
    if at is not None and at > now + MAX_FUTURE:
        raise InvalidInput(f"at {at.isoformat()} is in the future", code="future_timestamp", field="at")
    async with db.read() as session:  # fail fast, before reading any bytes
        model, found, alias = await resolve(session, model_name=model_name, alias=alias, version=version)
    baseline = await baselines.baseline_or_lineage(
        db, store, model_name=model.name, version=found.version, tmp_dir=tmp_dir
    )
    # The body goes to a file and the profiling worker reads it from there: only its path crosses processes.
    spooled = await spool(chunks, tmp_dir=tmp_dir, max_bytes=min(max_bytes, MAX_BATCH_BYTES), direct=False)
    try:
        seed = int(spooled.sha256[:8], 16)
        batch = await workers.run(
            profile_batch, str(spooled.path), fmt, baseline.schema, at or now, now, seed, store is not None
        )
    finally:
        # In a thread: closing the last descriptor of the unlinked file frees its pages, a millisecond per few MB
        # that reads would otherwise wait for on the event loop.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(spooled.discard)
    parts = batch.parts
    samples = await _samples(db, store, version_id=found.id, parts=parts, seed=seed, tmp_dir=tmp_dir) if store else {}
    async with db.write() as session:
        # Buckets are merged in time order: two batches spanning the same hours lock their rows in the same
        # order on PostgreSQL, so they queue behind each other instead of deadlocking.
        for part in parts:
            await merge_bucket(
                session, version_id=found.id, start=part.start, rows=part.rows, profile=part.profile,
                sample=samples.get(part.start),
            )  # fmt: skip
        await labels.keep_rows(session, version_id=found.id, rows=batch.kept)
    observability.metrics().monitor_batches.inc()
    return Ingested(
        model=model.name,
        version=found.version,
        alias=alias,
        rows=batch.rows,
        buckets=[(part.start, part.rows) for part in parts],
    )


# -- reservoir samples, for reports -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sample:
    digest: str
    size: int
    merged_with: str | None
    """The bucket's sample this one includes (None: the bucket had none)."""


async def read_sample(store: BlobStore, digest: str) -> pa.Table:
    """A bucket's sample (Parquet in the blob store)."""
    import pyarrow.parquet as pq

    data = b"".join([chunk async for chunk in store.stream(digest)])
    return await anyio.to_thread.run_sync(lambda: pq.read_table(io.BytesIO(data)))


async def _samples(
    db: Database, store: BlobStore, *, version_id: int, parts: list[Part], seed: int, tmp_dir: Path
) -> dict[datetime, Sample]:
    """Each bucket's next sample: the batch's sample merged with the bucket's, as a uniform sample of at most
    SAMPLE_ROWS rows of all the bucket's rows. Written to the blob store before the rows point at it."""
    async with db.read() as session:
        stored = {
            b.bucket_start: (b.sample_digest, b.rows)
            for b in await session.scalars(
                select(MonitorBucket).where(
                    MonitorBucket.model_version_id == version_id,
                    MonitorBucket.bucket_start.in_([p.start for p in parts]),
                )
            )
        }
    samples: dict[datetime, bytes] = {}
    merging: list[tuple[datetime, bytes, int, bytes, int]] = []
    for part in parts:
        assert part.sample is not None  # asked for, since there is a store
        before, rows = stored.get(part.start, (None, 0))
        if before is None:
            samples[part.start] = part.sample
        else:
            old = b"".join([chunk async for chunk in store.stream(before)])
            merging.append((part.start, old, rows, part.sample, part.rows))
    if merging:  # Parquet in and out, so in a worker too (a few kilobytes each way)
        merged = await workers.run(merge_samples, [m[1:] for m in merging], seed)
        samples.update(zip([m[0] for m in merging], merged, strict=True))
    made: dict[datetime, Sample] = {}
    tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for part in parts:
        before, _ = stored.get(part.start, (None, 0))
        data = samples[part.start]
        digest = hashlib.sha256(data).hexdigest()
        with tempfile.NamedTemporaryFile(dir=tmp_dir, prefix="sample-", delete=False) as handle:
            handle.write(data)
        try:
            await store.put(digest, Path(handle.name))  # consumes the file
        finally:
            Path(handle.name).unlink(missing_ok=True)
        made[part.start] = Sample(digest=digest, size=len(data), merged_with=before)
    return made


def merge_samples(pairs: list[tuple[bytes, int, bytes, int]], seed: int) -> list[bytes]:
    """Buckets' stored samples merged with a batch's: ``(stored, its rows, the batch's, its rows)`` in, Parquet
    each; Parquet out. Runs in a profiling worker."""
    import pyarrow.parquet as pq

    from monitoring.profile import merge_reservoirs

    made = []
    for old, old_rows, new, new_rows in pairs:
        merged = merge_reservoirs(
            pq.read_table(io.BytesIO(old)), old_rows, pq.read_table(io.BytesIO(new)), new_rows, SAMPLE_ROWS, seed
        )
        sink = io.BytesIO()
        pq.write_table(merged, sink)
        made.append(sink.getvalue())
    return made


async def buckets_in(
    session: AsyncSession, *, version_id: int, start: datetime | None, end: datetime
) -> list[MonitorBucket]:
    """The version's buckets that start in ``[start, end)`` (every one before ``end`` without ``start``)."""
    query = select(MonitorBucket).where(MonitorBucket.model_version_id == version_id, MonitorBucket.bucket_start < end)
    if start is not None:
        query = query.where(MonitorBucket.bucket_start >= start)
    return list(await session.scalars(query.order_by(MonitorBucket.bucket_start)))
