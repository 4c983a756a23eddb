"""Artifacts: content-addressed blobs, run file trees, named immutable artifact versions (datasets ...)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry import observability
from registry.domain.artifacts import ARTIFACT_KINDS, ArtifactFile, ArtifactVersion, Blob, RunFile
from registry.domain.base import utcnow
from registry.errors import Conflict, InvalidInput, NotFound
from registry.services import events, names, runs
from registry.services._sql import dialect, upsert
from registry.services.auth import Actor
from registry.storage import BlobStore
from registry.storage.spool import spool


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    path: str
    sha256: str
    size: int


def manifest_digest(entries: Iterable[ManifestEntry]) -> str:
    """sha256 over ``path\\0sha256\\0size\\n`` lines in path order: equal trees, equal digests."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: e.path):
        digest.update(f"{entry.path}\0{entry.sha256}\0{entry.size}\n".encode())
    return digest.hexdigest()


async def ingest(
    chunks: AsyncIterable[bytes],
    *,
    store: BlobStore,
    tmp_dir: Path,
    max_bytes: int,
    expected_sha256: str | None = None,
) -> tuple[str, int]:
    """Stream bytes into the blob store (no transaction is held meanwhile); returns ``(sha256, size)``.

    The caller then records the blob with ``record_blob`` in its transaction. A crash in between leaves an
    unreferenced object in the store, never a row without bytes.
    """
    spooled = await spool(chunks, tmp_dir=tmp_dir, max_bytes=max_bytes, expected_sha256=expected_sha256)
    try:
        await store.put(spooled.sha256, spooled.path)
    finally:
        spooled.discard()
    observability.metrics().upload_bytes.labels("streamed").inc(spooled.size)
    return spooled.sha256, spooled.size


async def record_blob(session: AsyncSession, *, sha256: str, size: int, store: BlobStore | None = None) -> None:
    """Record that the bytes under ``sha256`` were just stored (after ``store.put``, in the transaction that
    will reference them, if any).

    Race-safety with ``registry.services.gc`` (see its docstring): the row is inserted, or its ``created_at``
    refreshed, so a re-upload of old unreferenced content restarts its grace period and holds the row lock
    until commit. With ``store``, the bytes are checked once this transaction holds the blob's gc lock: a
    collection that deleted them between our ``put`` (which skipped the upload: same digest, already stored)
    and here raises :class:`BlobReclaimed` instead of leaving a row without bytes.
    """
    await gc_lock(session, sha256=sha256, exclusive=False)
    stmt = upsert(session, Blob).values(sha256=sha256, size=size, created_at=utcnow())
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["sha256"], set_={"created_at": stmt.excluded.created_at})
    )
    if store is not None and not await store.exists(sha256):
        raise BlobReclaimed(f"blob {sha256} was reclaimed while it was being uploaded: upload it again")


class BlobReclaimed(Conflict):
    """A storage collection deleted the bytes of a blob while it was being uploaded again."""

    code = "blob_reclaimed"


async def gc_lock(session: AsyncSession, *, sha256: str, exclusive: bool) -> None:
    """The per-digest lock between recording a blob (shared) and gc deleting its bytes (exclusive), held
    until the transaction ends. PostgreSQL: a transaction-scoped advisory lock (a hash collision only makes
    two digests wait for each other). SQLite: the single writer lock every write transaction already holds."""
    if dialect(session) == "postgresql":
        lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
        await session.execute(select(lock(func.hashtext(f"blob:{sha256}"))))


_BLOBS = cast(Table, Blob.__table__)
_BLOB_SIZES: Final = select(_BLOBS.c.sha256, _BLOBS.c.size).where(
    _BLOBS.c.sha256.in_(bindparam("digests", expanding=True))
)
_LOCK_BLOBS_PG: Final = _BLOB_SIZES.with_for_update(read=True)


async def lock_blobs(session: AsyncSession, *, digests: Iterable[str]) -> dict[str, int]:
    """Sizes of the stored blobs among ``digests``, each row share-locked until commit (PostgreSQL), so gc
    (which locks a blob row ``FOR UPDATE`` before deleting it) cannot delete one this transaction is about to
    reference. Call it before adding a reference to an existing blob."""
    wanted = sorted(set(digests))
    if not wanted:
        return {}
    query = _LOCK_BLOBS_PG if dialect(session) == "postgresql" else _BLOB_SIZES
    return {sha: int(size) for sha, size in (await session.execute(query, {"digests": wanted})).all()}


async def find_blob(session: AsyncSession, *, sha256: str) -> Blob | None:
    return await session.get(Blob, sha256)


async def get_blob(session: AsyncSession, *, sha256: str) -> Blob:
    blob = await session.get(Blob, sha256)
    if blob is None:
        raise NotFound(f"blob {sha256} does not exist")
    return blob


def check_digest(value: str) -> str:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidInput(f"{value!r} is not a lowercase hex sha256", field="sha256")
    return value


async def put_run_file(
    session: AsyncSession, *, run_id: str, path: str, sha256: str, size: int, store: BlobStore | None = None
) -> RunFile:
    """Point ``path`` in the run's tree at a stored blob (replacing what was there); ``store``: see
    :func:`record_blob`."""
    await runs.get(session, run_id=run_id, for_write=True)
    await record_blob(session, sha256=sha256, size=size, store=store)
    stmt = upsert(session, RunFile).values(run_id=run_id, path=path, sha256=sha256, size=size)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["run_id", "path"],
            set_={"sha256": stmt.excluded.sha256, "size": stmt.excluded.size},
        )
    )
    file = await session.get(RunFile, (run_id, path), populate_existing=True)
    assert file is not None
    return file


async def get_run_file(session: AsyncSession, *, run_id: str, path: str) -> RunFile:
    file = await session.get(RunFile, (run_id, path))
    if file is None:
        await runs.get(session, run_id=run_id)
        raise NotFound(f"run {run_id} has no artifact {path!r}")
    return file


def _under(folder: str) -> ColumnElement[bool]:
    """Run files at any depth below ``folder``. A range scan instead of LIKE: no escaping of '%'/'_' in user
    paths, and it uses the primary key ('0' is the character after '/')."""
    return and_(RunFile.path > folder + "/", RunFile.path < folder + "0")


async def list_run_files(session: AsyncSession, *, run_id: str, prefix: str = "") -> list[RunFile]:
    """Files at any depth under ``prefix`` (a folder path; empty for the whole tree)."""
    await runs.get(session, run_id=run_id)
    query = select(RunFile).where(RunFile.run_id == run_id).order_by(RunFile.path)
    if prefix:
        query = query.where(_under(prefix))
    return list(await session.scalars(query))


_RUN_FILES = cast(Table, RunFile.__table__)
_MANIFEST: Final = (
    select(_RUN_FILES.c.path, _RUN_FILES.c.sha256, _RUN_FILES.c.size)
    .where(_RUN_FILES.c.run_id == bindparam("run"))
    .order_by(_RUN_FILES.c.path)
)
_MANIFEST_AT: Final = _MANIFEST.where(
    or_(
        _RUN_FILES.c.path == bindparam("path"),
        and_(_RUN_FILES.c.path > bindparam("below"), _RUN_FILES.c.path < bindparam("past")),  # as _under does
    )
)
"""Built once: every version registered from a run reads its manifest."""


async def run_manifest(session: AsyncSession, *, run_id: str, path: str) -> list[ManifestEntry]:
    """Snapshot of the run's files under ``path`` (a folder or a single file), paths relative to it.

    One query for both readings of ``path``; a file of that exact name wins over a folder of it. Raises
    NotFound when the run does not exist or has no files there."""
    path = names.artifact_path(path, allow_empty=True)
    if path:
        where = {"run": run_id, "path": path, "below": path + "/", "past": path + "0"}
        rows = (await session.execute(_MANIFEST_AT, where)).all()
    else:
        rows = (await session.execute(_MANIFEST, {"run": run_id})).all()
    for found, sha256, size in rows:
        if found == path:
            return [ManifestEntry(path=path.rsplit("/", 1)[-1], sha256=sha256, size=int(size))]
    if not rows:
        await runs.get(session, run_id=run_id)  # a missing run is reported as such
        raise NotFound(f"run {run_id} has no files under {path or '/'!r}")
    cut = len(path) + 1 if path else 0
    return [ManifestEntry(path=found[cut:], sha256=sha256, size=int(size)) for found, sha256, size in rows]


async def keep_blobs(session: AsyncSession, *, digests: Iterable[str]) -> None:
    """Make sure gc cannot delete blobs that stored rows reference (run files) before this transaction adds
    its own references. PostgreSQL: share-lock them (``lock_blobs``). SQLite: nothing to do, the write
    transaction holds the database's write lock, so gc cannot run before it commits."""
    if dialect(session) == "postgresql":
        await lock_blobs(session, digests=digests)


async def check_manifest(session: AsyncSession, *, entries: list[ManifestEntry]) -> list[ManifestEntry]:
    """Validate paths and make sure every referenced blob is stored with the stated size."""
    if not entries:
        raise InvalidInput("a manifest needs at least one file", field="files")
    seen: set[str] = set()
    clean: list[ManifestEntry] = []
    for entry in entries:
        path = names.artifact_path(entry.path)
        if path in seen:
            raise InvalidInput(f"file {path!r} is listed twice", field="files")
        seen.add(path)
        clean.append(ManifestEntry(path=path, sha256=check_digest(entry.sha256), size=entry.size))
    digests = {e.sha256 for e in clean}
    stored = await lock_blobs(session, digests=digests)  # gc may not delete them before we commit
    for entry in clean:
        if entry.sha256 not in stored:
            raise InvalidInput(
                f"file {entry.path!r}: blob {entry.sha256} was not uploaded", field="files", code="blob_missing"
            )
        if stored[entry.sha256] != entry.size:
            raise InvalidInput(
                f"file {entry.path!r}: size {entry.size} does not match the stored blob ({stored[entry.sha256]})",
                field="files",
            )
    return clean


async def create_version(
    session: AsyncSession,
    *,
    name: str,
    kind: str,
    actor: Actor,
    run_id: str | None = None,
    path: str | None = None,
    entries: list[ManifestEntry] | None = None,
    description: str | None = None,
) -> tuple[ArtifactVersion, list[ManifestEntry]]:
    """Freeze a named artifact version from a run folder (``run_id`` + ``path``) or an explicit manifest."""
    names.model_name(name)
    if kind not in ARTIFACT_KINDS:
        raise InvalidInput(f"unknown artifact kind {kind!r}: use one of {', '.join(ARTIFACT_KINDS)}", field="kind")
    if run_id is not None and entries is None:
        entries = await run_manifest(session, run_id=run_id, path=path or "")
    elif run_id is not None:
        await runs.get(session, run_id=run_id)
    entries = await check_manifest(session, entries=entries or [])
    # Versions of one name are numbered under the SQLite write lock / a PostgreSQL advisory lock on the name.
    if dialect(session) == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"artifact:{name}"))))
    last = await session.scalar(select(func.max(ArtifactVersion.version)).where(ArtifactVersion.name == name))
    version = ArtifactVersion(
        name=name,
        version=(last or 0) + 1,
        kind=kind,
        run_id=run_id,
        source_path=path,
        description=description,
        digest=manifest_digest(entries),
        created_by=actor.name,
    )
    session.add(version)
    await session.flush()
    session.add_all(ArtifactFile(artifact_id=version.id, path=e.path, sha256=e.sha256, size=e.size) for e in entries)
    await events.record(
        session,
        type="artifact_version.created",
        subject=f"artifacts/{name}/{version.version}",
        actor=actor.name,
        data={
            "name": name,
            "version": version.version,
            "kind": kind,
            "run_id": run_id,
            "digest": version.digest,
        },
    )
    await session.flush()
    return version, entries


async def get_version(session: AsyncSession, *, name: str, version: int) -> ArtifactVersion:
    found = await session.scalar(
        select(ArtifactVersion).where(ArtifactVersion.name == name, ArtifactVersion.version == version)
    )
    if found is None:
        raise NotFound(f"artifact {name!r} has no version {version}")
    return found


async def version_files(session: AsyncSession, *, artifact_id: int) -> list[ManifestEntry]:
    rows = await session.scalars(
        select(ArtifactFile).where(ArtifactFile.artifact_id == artifact_id).order_by(ArtifactFile.path)
    )
    return [ManifestEntry(path=f.path, sha256=f.sha256, size=f.size) for f in rows]


async def list_versions(session: AsyncSession, *, name: str) -> list[ArtifactVersion]:
    rows = await session.scalars(
        select(ArtifactVersion).where(ArtifactVersion.name == name).order_by(ArtifactVersion.version)
    )
    return list(rows)
