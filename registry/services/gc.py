"""Storage reclaim: delete the blobs nothing references any more, once they are older than a grace period.

What references a blob: every foreign key to ``blobs.sha256`` (version files, artifact files, run files, a
run's git diff), the digest columns that name blobs without one (``BLOB_DIGEST_COLUMNS``: baselines' reference
files, bucket samples, check reports) and the sample digests a check keeps for its report (a JSON list).
A blob's age is ``Blob.created_at``, which :func:`registry.services.artifacts.record_blob` refreshes on every
upload of the bytes, so content uploaded again restarts its grace period.

Race-safety. Three kinds of writer meet a collection, and none of them may end up pointing at missing bytes:

1. *Adding a reference to a stored blob* (a version or artifact manifest, a run's git diff): the writer reads
   the blob rows ``FOR SHARE`` (``artifacts.lock_blobs``) in the transaction that adds the reference.
2. *Recording an upload* (``record_blob``): it upserts the row (a row lock, refreshing ``created_at``) under a
   shared per-digest lock (``artifacts.gc_lock``), then, given the store, checks that the bytes are there.
3. *The collection*, per batch, in two transactions:

   a. **Rows.** Candidates (old enough, unreferenced) are locked ``FOR UPDATE SKIP LOCKED`` (a row a writer
      holds is skipped, never waited for), then checked again by a new statement, which in READ COMMITTED
      sees every reference committed before the lock was taken; a writer that comes later needs the row lock
      (1, 2, and the foreign key's own ``FOR KEY SHARE``) and so waits for this commit, then finds no row and
      fails cleanly ("blob ... was not uploaded"). The rows are deleted and committed.
   b. **Bytes.** For each deleted digest, under the *exclusive* per-digest lock: if no row exists again,
      the bytes are deleted. An upload of the same content that recorded its row before this step keeps its
      bytes (the row exists); one that records after it finds the bytes gone (2) and fails with
      ``blob_reclaimed`` (409, nothing recorded), so a row without bytes never commits. Its client uploads
      again, and content addressing makes that a fresh, complete blob.

   Bytes are deleted only after their row's deletion committed: a crash in between leaves an unreferenced
   object in the store (like a crash between an upload and its row), never a row without bytes.

On SQLite every write transaction holds the single writer lock, which serialises all of the above the same way.
Callers of ``record_blob`` that do not pass the store (monitoring's) skip check 2; they write content that is new
(reports, samples) or re-stored just before, so only a collection with a grace period shorter than one upload
could reach them.

This module is a maintenance job (a boundary, like ``automations.jobs``): :func:`collect` opens its own short
transactions; the session-level steps below it never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, and_, delete, exists, not_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from registry.db import Database
from registry.domain import Base
from registry.domain.artifacts import Blob
from registry.domain.base import utcnow
from registry.services._sql import dialect
from registry.services.artifacts import gc_lock
from registry.services.backup._scope import BLOB_DIGEST_COLUMNS
from registry.settings import Settings
from registry.storage import BlobStore, open_store

BATCH = 200
"""Blobs per transaction: short row locks, and few enough bound parameters for any SQLite build."""
SAMPLE_LISTS = (("monitor_checks", "report_samples"),)
"""JSON columns holding lists of blob digests (a check's report is built from exactly these samples)."""


@dataclass(slots=True)
class Collected:
    """What a collection did (or, dry, would do)."""

    dry_run: bool
    grace_hours: float
    cutoff: datetime
    blobs: int = 0
    bytes: int = 0
    digests: list[str] = field(default_factory=list)
    """The digests reclaimed (the first ``MAX_LISTED``)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "grace_hours": self.grace_hours,
            "cutoff": self.cutoff.isoformat(),
            "blobs": self.blobs,
            "bytes": self.bytes,
            "digests": self.digests,
        }


MAX_LISTED = 1000


def reference_columns() -> list[Column[Any]]:
    """Every column that names a blob: foreign keys to ``blobs.sha256`` and ``BLOB_DIGEST_COLUMNS``."""
    blobs = Base.metadata.tables[Blob.__tablename__]
    found: list[Column[Any]] = []
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column is blobs.c.sha256:
                found.append(fk.parent)
        for table_name, column_name in BLOB_DIGEST_COLUMNS:
            if table.name == table_name and column_name in table.c:
                found.append(table.c[column_name])
    return found


def _unreferenced() -> ColumnElement[bool]:
    return and_(*(not_(exists().where(column == Blob.sha256)) for column in reference_columns()))


async def _sampled(session: AsyncSession, digests: Sequence[str]) -> set[str]:
    """Those of ``digests`` that a JSON digest list names (read in full: JSON containment differs by engine)."""
    wanted, named = set(digests), set[str]()
    for table_name, column_name in SAMPLE_LISTS:
        table = Base.metadata.tables.get(table_name)
        if table is None or column_name not in table.c:
            continue
        column = table.c[column_name]
        for value in await session.scalars(select(column).where(column.is_not(None))):
            named.update(d for d in value or () if d in wanted)
    return named


async def candidates(session: AsyncSession, *, cutoff: datetime, after: str = "", limit: int = BATCH) -> list[str]:
    """Digests above ``after`` (in order) of blobs stored before ``cutoff`` that nothing references now."""
    query = (
        select(Blob.sha256)
        .where(Blob.sha256 > after, Blob.created_at < cutoff, _unreferenced())
        .order_by(Blob.sha256)
        .limit(limit)
    )
    return list(await session.scalars(query))


async def condemn(
    session: AsyncSession, *, digests: Sequence[str], cutoff: datetime, dry_run: bool = False
) -> dict[str, int]:
    """Delete the rows of those ``digests`` that are still old and unreferenced once locked; returns their
    sizes. Rows another transaction holds are skipped (the next collection sees them again)."""
    if not digests:
        return {}
    wanted = sorted(digests)
    if dialect(session) == "postgresql" and not dry_run:
        locking = select(Blob.sha256).where(Blob.sha256.in_(wanted)).with_for_update(skip_locked=True)
        wanted = sorted(await session.scalars(locking))
        if not wanted:
            return {}
    # A new statement after the locks: in READ COMMITTED it sees every reference committed before them.
    recheck = select(Blob.sha256, Blob.size).where(Blob.sha256.in_(wanted), Blob.created_at < cutoff, _unreferenced())
    doomed = {sha: int(size) for sha, size in (await session.execute(recheck)).all()}
    for sha in await _sampled(session, list(doomed)):
        del doomed[sha]
    if doomed and not dry_run:
        await session.execute(delete(Blob).where(Blob.sha256.in_(sorted(doomed))))
    return doomed


async def release_bytes(session: AsyncSession, *, digests: Sequence[str], store: BlobStore) -> list[str]:
    """Delete the stored bytes of ``digests`` whose rows are gone, each under its exclusive gc lock (held to
    the end of the transaction, so an upload recording the digest meanwhile waits and then sees the bytes
    gone). Returns the digests whose bytes were deleted; one uploaded again meanwhile keeps its bytes."""
    released = []
    for sha in sorted(digests):  # one order for every collector: no lock cycles between them
        await gc_lock(session, sha256=sha, exclusive=True)
        if await session.scalar(select(Blob.sha256).where(Blob.sha256 == sha)) is None:
            await store.delete(sha)
            released.append(sha)
    return released


async def collect(
    db: Database, store: BlobStore, *, grace: timedelta, dry_run: bool = False, batch: int = BATCH
) -> Collected:
    """Reclaim every blob stored before ``now - grace`` that nothing references (see the module docstring).

    Idempotent and safe to run on several replicas at once: each batch's rows are claimed by their row locks,
    and bytes are deleted only for rows that are gone. ``dry_run`` deletes nothing and reports what would go."""
    cutoff = utcnow() - grace
    report = Collected(dry_run=dry_run, grace_hours=grace.total_seconds() / 3600, cutoff=cutoff)
    after = ""
    while True:
        async with db.read() as session:
            found = await candidates(session, cutoff=cutoff, after=after, limit=batch)
        if not found:
            return report
        after = found[-1]
        if dry_run:
            async with db.read() as session:
                doomed = await condemn(session, digests=found, cutoff=cutoff, dry_run=True)
        else:
            async with db.write() as session:
                doomed = await condemn(session, digests=found, cutoff=cutoff)
            if doomed:
                async with db.write() as session:
                    await release_bytes(session, digests=list(doomed), store=store)
        report.blobs += len(doomed)
        report.bytes += sum(doomed.values())
        room = MAX_LISTED - len(report.digests)
        report.digests.extend(sorted(doomed)[: max(room, 0)])


async def collect_garbage(db: Database, settings: Settings) -> str | None:
    """The scheduled job (``blobs.collect_garbage``): one collection with the configured grace period."""
    store = open_store(settings)
    try:
        report = await collect(db, store, grace=timedelta(hours=settings.gc_grace_hours))
        # Direct uploads to S3 that were started and never completed (registry.storage.direct).
        direct = getattr(store, "direct", None)
        abandoned = await direct.sweep() if direct is not None else 0
    finally:
        await store.close()
    done = [f"reclaimed {report.blobs} blobs ({report.bytes} bytes)"] if report.blobs else []
    if abandoned:
        done.append(f"removed {abandoned} abandoned direct upload(s)")
    return "; ".join(done) or None
