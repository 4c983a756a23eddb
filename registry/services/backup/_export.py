"""Export: one read transaction spooled to table files, then written with the blobs as one tar archive."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

import anyio
from anyio import AsyncFile
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.base import utcnow
from registry.domain.models import RegisteredModel
from registry.services import _sql, models
from registry.services.backup._common import (
    BATCH,
    BLOBS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    BackupFailed,
    Key,
    SchemaMismatch,
    column_kind,
    encode_value,
    head_revision,
    key_in,
    primary_key,
    table_of,
    tables,
)
from registry.services.backup._scope import scope_of
from registry.storage import CHUNK_SIZE, BlobStore


@dataclass(frozen=True)
class TableFile:
    name: str
    path: Path
    rows: int
    sha256: str
    size: int


@dataclass(frozen=True)
class Snapshot:
    """What one read transaction saw, spooled to files: ready to be written as an archive."""

    revision: str
    created_at: datetime
    dialect: str
    model: str | None
    tables: list[TableFile]
    blobs: list[tuple[str, int]]
    """(sha256, size) of every archived ``blobs`` row."""

    def manifest(self) -> dict[str, Any]:
        files = {f"tables/{t.name}.jsonl": {"sha256": t.sha256, "size": t.size} for t in self.tables}
        files.update({f"blobs/{digest}": {"sha256": digest, "size": size} for digest, size in self.blobs})
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_revision": self.revision,
            "created_at": self.created_at.isoformat(),
            "source_dialect": self.dialect,
            "scope": {"model": self.model} if self.model else {"all": True},
            "tables": [{"name": t.name, "rows": t.rows} for t in self.tables],
            "files": files,
        }


async def pin(session: AsyncSession) -> str:
    """Begin the snapshot every later read of ``session`` sees; returns its schema revision.

    Must come before anything else runs on the session. PostgreSQL: REPEATABLE READ READ ONLY (one
    snapshot, taken at the first query). SQLite: the read transaction's first read fixes its view of the
    WAL; writers carry on meanwhile. Raises SchemaMismatch unless the database is at this code's head
    revision (only then are its tables what the metadata describes).
    """
    if _sql.dialect(session) == "postgresql":
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
    revision = await session.scalar(text("SELECT version_num FROM alembic_version"))
    head = head_revision()
    if revision != head:
        raise SchemaMismatch(
            f"the database is at schema revision {revision}, this registry's code at {head}: export with the "
            "release the database was migrated by, or run `registry db upgrade` first"
        )
    return head


async def snapshot(session: AsyncSession, *, spool: Path, model: str | None = None) -> Snapshot:
    """Write every row (those of ``model`` only, when named) to ``spool/<table>.jsonl``, all read in the
    session's one transaction. ``session`` must be fresh or :func:`pin`-ned. Raises NotFound (no such model),
    SchemaMismatch, BackupFailed (a value of a type the archive cannot carry)."""
    revision = head_revision() if session.in_transaction() else await pin(session)
    created_at = utcnow()
    selected = None
    if model is not None:
        root = await models.get(session, name=model)
        selected = await scope_of(session, root=table_of(RegisteredModel), key=(root.id,))
    written: list[TableFile] = []
    blobs: list[tuple[str, int]] = []
    for table in tables():
        kinds = {c.name: column_kind(c) for c in table.columns}
        target = spool / f"{table.name}.jsonl"
        hasher, rows, size = hashlib.sha256(), 0, 0
        async with await anyio.open_file(target, "wb") as out:
            async for batch in _rows(session, table, None if selected is None else selected.get(table.name, set())):
                lines = []
                for row in batch:
                    try:
                        encoded = {name: encode_value(kinds[name], value) for name, value in row.items()}
                    except TypeError as exc:
                        raise BackupFailed(f"{table.name}: {exc}") from None
                    lines.append(json.dumps(encoded, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
                    if table is BLOBS:
                        blobs.append((row["sha256"], int(row["size"])))
                data = b"".join(lines)
                hasher.update(data)
                rows, size = rows + len(lines), size + len(data)
                await out.write(data)
        written.append(TableFile(table.name, target, rows, hasher.hexdigest(), size))
    return Snapshot(revision, created_at, _sql.dialect(session), model, written, blobs)


async def _rows(session: AsyncSession, table: Table, keys: set[Key] | None) -> AsyncIterator[list[dict[str, Any]]]:
    """Batches of a table's rows in primary-key order: all of them (``keys`` None), or those with ``keys``."""
    pk = primary_key(table)
    if keys is None:
        result = await session.stream(select(table).order_by(*pk))  # a server-side cursor: memory stays flat
        async for part in result.mappings().partitions(BATCH):
            yield [dict(row) for row in part]
        return
    ordered = sorted(keys)
    for start in range(0, len(ordered), BATCH):
        query = select(table).where(key_in(pk, ordered[start : start + BATCH])).order_by(*pk)
        yield [dict(row) for row in (await session.execute(query)).mappings()]


class _TarWriter:
    """A tar stream written member by member, each one's size known before its bytes (as tar needs), so
    blobs stream from the store into the archive without a local copy."""

    def __init__(self, out: AsyncFile[bytes], mtime: float) -> None:
        self._out, self._mtime = out, int(mtime)

    async def begin(self, name: str, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, self._mtime, 0o600
        await self._out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict"))

    async def write(self, data: bytes) -> None:
        await self._out.write(data)

    async def end(self, size: int) -> None:
        if size % tarfile.BLOCKSIZE:
            await self._out.write(b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))

    async def close(self) -> None:
        await self._out.write(b"\0" * (2 * tarfile.BLOCKSIZE))  # the end-of-archive marker


@dataclass(frozen=True)
class Written:
    path: Path
    bytes: int
    rows: dict[str, int]
    blobs: int
    blob_bytes: int


async def write_archive(snap: Snapshot, *, store: BlobStore, path: Path) -> Written:
    """Write ``snap`` and its blobs (streamed from ``store``, each verified against its sha256) to ``path``,
    gzip-compressed if the name ends in ``.gz``/``.tgz``. The file is owner-only (it holds token hashes and
    webhook secrets) and appears under ``path`` only once complete and synced; a failure leaves nothing.
    Raises BackupFailed for a blob missing from the store or not matching its digest."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    raw = await anyio.to_thread.run_sync(_create_private, partial)
    try:
        compress = path.name.endswith((".gz", ".tgz"))
        sink = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)) if compress else raw
        tar = _TarWriter(anyio.wrap_file(sink), snap.created_at.timestamp())
        manifest = json.dumps(snap.manifest(), indent=1).encode()
        await tar.begin(MANIFEST, len(manifest))
        await tar.write(manifest)
        await tar.end(len(manifest))
        for table in snap.tables:
            await tar.begin(f"tables/{table.name}.jsonl", table.size)
            async with await anyio.open_file(table.path, "rb") as source:
                while chunk := await source.read(CHUNK_SIZE):
                    await tar.write(chunk)
            await tar.end(table.size)
        for digest, size in snap.blobs:
            await tar.begin(f"blobs/{digest}", size)
            await _copy_blob(store, digest, size, tar)
            await tar.end(size)
        await tar.close()
        if sink is not raw:
            await anyio.to_thread.run_sync(sink.close)  # the gzip trailer; the file stays open
        await anyio.to_thread.run_sync(_sync_close, raw)
        await anyio.to_thread.run_sync(os.replace, partial, path)
    except BaseException:
        raw.close()
        partial.unlink(missing_ok=True)
        raise
    return Written(
        path=path,
        bytes=path.stat().st_size,
        rows={t.name: t.rows for t in snap.tables},
        blobs=len(snap.blobs),
        blob_bytes=sum(size for _, size in snap.blobs),
    )


def _create_private(path: Path) -> IO[bytes]:
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _sync_close(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


async def _copy_blob(store: BlobStore, digest: str, size: int, tar: _TarWriter) -> None:
    hasher, seen = hashlib.sha256(), 0
    try:
        async for chunk in store.stream(digest):
            seen += len(chunk)
            if seen > size:  # more than the header announced: never written past it
                break
            hasher.update(chunk)
            await tar.write(chunk)
    except FileNotFoundError:
        raise BackupFailed(f"blob {digest} is recorded in the database but missing from the blob store") from None
    if seen != size or hasher.hexdigest() != digest:
        raise BackupFailed(f"blob {digest} in the blob store does not match its recorded sha256 and size {size}")
