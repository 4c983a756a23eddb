"""Import: check the manifest, verify every member while putting the blobs, then insert every row in one
write transaction (a bad archive leaves no row behind; blobs already put are content-addressed, harmless)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio import AsyncFile
from sqlalchemy import JSON, Column, Table, bindparam, delete, func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.auth import ApiToken
from registry.domain.models import RegisteredModel
from registry.domain.runs import Run
from registry.services import _sql
from registry.services.backup._common import (
    BATCH,
    BLOBS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ArchiveInvalid,
    SchemaMismatch,
    TargetNotEmpty,
    column_kind,
    decode_value,
    head_revision,
    key_in,
    primary_key,
    table_of,
    tables,
)
from registry.storage import CHUNK_SIZE, BlobStore

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
IN_USE = (table_of(RegisteredModel), table_of(Run), table_of(ApiToken))
"""A target holding rows in any of these is in use, and import refuses it. A server's first start on a
database creates an admin token, so a server that ever ran on it is enough."""
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_UNREADABLE = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
"""What a damaged, truncated or foreign file raises while read as a (gzipped) tar stream."""


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    revision: str
    scope: dict[str, Any]
    rows: dict[str, int]
    """Rows per table."""
    files: dict[str, tuple[str, int]]
    """Member name → (sha256, size)."""


def parse_manifest(raw: bytes) -> Manifest:
    """Check the manifest's shape, and that this code restores its revision. Raises ArchiveInvalid,
    SchemaMismatch."""
    try:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise ArchiveInvalid("not a Modelkeep backup (its manifest names another format)")
        if data.get("format_version") != FORMAT_VERSION:
            raise ArchiveInvalid(f"backup format {data.get('format_version')!r}: this registry reads {FORMAT_VERSION}")
        rows = {str(t["name"]): int(t["rows"]) for t in data["tables"]}
        files = {str(name): (str(f["sha256"]), int(f["size"])) for name, f in data["files"].items()}
        manifest = Manifest(raw, str(data["schema_revision"]), dict(data["scope"]), rows, files)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ArchiveInvalid("the archive's manifest.json is malformed") from None
    head = head_revision()
    if manifest.revision != head:
        raise SchemaMismatch(
            f"the archive is of schema revision {manifest.revision}, this registry restores {head}: import it "
            "with the Modelkeep release that wrote it (then upgrade that registry)"
        )
    if unknown := sorted(set(rows) - {t.name for t in tables()}):
        raise ArchiveInvalid(f"the archive holds tables this registry does not have: {', '.join(unknown)}")
    table_files = {f"tables/{name}.jsonl" for name in rows}
    for name, (digest, _) in files.items():
        blob = name.startswith("blobs/") and digest == name.removeprefix("blobs/")
        if not _DIGEST.match(digest) or not (blob or name in table_files):
            raise ArchiveInvalid(f"the manifest lists an unexpected member {name!r}")
    return manifest


def _open_tar(path: Path) -> tarfile.TarFile:
    return tarfile.open(path, mode="r|*")  # a stream, read once front to back, gzipped or not


def _first_member(tar: tarfile.TarFile) -> bytes:
    member = tar.next()
    if member is None or member.name != MANIFEST or not member.isfile() or member.size > MAX_MANIFEST_BYTES:
        raise ArchiveInvalid("the archive does not start with a manifest.json: not a Modelkeep backup")
    handle = tar.extractfile(member)
    assert handle is not None  # a regular file
    return handle.read()


def _read_manifest(path: Path) -> bytes:
    with _open_tar(path) as tar:
        return _first_member(tar)


async def read_manifest(path: Path) -> Manifest:
    """The archive's manifest, checked (see :func:`parse_manifest`); reads only the archive's first member."""
    try:
        raw = await anyio.to_thread.run_sync(_read_manifest, path)
    except _UNREADABLE as exc:
        raise ArchiveInvalid(f"cannot read {path.name} as a tar archive ({exc})") from None
    return parse_manifest(raw)


async def check_empty(session: AsyncSession) -> None:
    """Raises TargetNotEmpty if the database holds models, runs or tokens."""
    held = {t.name: await session.scalar(select(func.count()).select_from(t)) or 0 for t in IN_USE}
    if any(held.values()):
        listed = ", ".join(f"{n} {name}" for name, n in held.items() if n)
        raise TargetNotEmpty(
            f"the target registry is not empty ({listed}): import restores into an empty registry only. Use a "
            "new database, and start a server on it only after importing (its first start creates an admin token)"
        )


@dataclass
class Staged:
    """An archive read through and verified: its table files in a spool folder, its blobs in the store."""

    manifest: Manifest
    tables: dict[str, Path] = field(default_factory=dict)
    blobs: set[str] = field(default_factory=set)


async def stage(path: Path, *, manifest: Manifest, store: BlobStore, spool: Path) -> Staged:
    """Read the archive through, checking every member against ``manifest`` (sha256, size, row count, none
    missing, none extra). Table files are kept in ``spool``; each blob is put into ``store`` once verified.
    Raises ArchiveInvalid."""
    staged = Staged(manifest)
    seen: set[str] = set()
    try:
        tar = await anyio.to_thread.run_sync(_open_tar, path)
        try:
            if await anyio.to_thread.run_sync(_first_member, tar) != manifest.raw:
                raise ArchiveInvalid(f"{path.name} changed while it was being read")
            while (member := await anyio.to_thread.run_sync(tar.next)) is not None:
                await _stage_member(tar, member, staged, seen, store=store, spool=spool)
        finally:
            await anyio.to_thread.run_sync(tar.close)
    except _UNREADABLE as exc:
        raise ArchiveInvalid(f"{path.name} is truncated or damaged ({exc})") from None
    if missing := sorted(set(manifest.files) - seen):
        raise ArchiveInvalid(f"{path.name} is truncated: {len(missing)} member(s) missing, the first {missing[0]}")
    return staged


async def _stage_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, staged: Staged, seen: set[str], *, store: BlobStore, spool: Path
) -> None:
    name = member.name
    expected = staged.manifest.files.get(name)
    if expected is None or not member.isfile() or name in seen:
        raise ArchiveInvalid(f"unexpected member {name!r} (not in the manifest, repeated, or not a file)")
    seen.add(name)
    table = name.removeprefix("tables/").removesuffix(".jsonl") if name.startswith("tables/") else None
    # Spool names of our own: a member's name never becomes a path.
    dest = spool / (f"table-{len(seen)}.jsonl" if table else f"blob-{expected[0]}")
    digest, size, lines = await anyio.to_thread.run_sync(_copy_member, tar, member, dest, table is None)
    if (digest, size) != expected:
        raise ArchiveInvalid(f"{name} does not match the manifest's sha256: the archive was changed or damaged")
    if table is not None:
        if lines != staged.manifest.rows.get(table):
            raise ArchiveInvalid(f"{name} holds {lines} rows, the manifest says {staged.manifest.rows.get(table)}")
        staged.tables[table] = dest
    else:
        await store.put(digest, dest)  # consumes the file
        staged.blobs.add(digest)


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, durable: bool) -> tuple[str, int, int]:
    """Copy a member's bytes to ``dest``; returns their sha256, size and number of lines. ``durable``
    syncs the file: blob stores take files already synced (a rename is all that makes them theirs)."""
    source = tar.extractfile(member)
    assert source is not None  # a regular file
    hasher, size, lines = hashlib.sha256(), 0, 0
    with open(dest, "xb") as out:
        while chunk := source.read(CHUNK_SIZE):
            hasher.update(chunk)
            size, lines = size + len(chunk), lines + chunk.count(b"\n")
            out.write(chunk)
        if durable:
            out.flush()
            os.fsync(out.fileno())
    return hasher.hexdigest(), size, lines


async def restore(session: AsyncSession, *, staged: Staged) -> dict[str, int]:
    """Insert every staged row, parents first, in the session's write transaction; returns rows per table.
    On PostgreSQL, every serial column's sequence is then moved past the restored ids.

    Rows the target holds under a primary key the archive has too (what migrations seed: the default
    experiment) are replaced. Raises TargetNotEmpty (also when the database refuses a row: it collides with
    one there) and ArchiveInvalid (a row that does not fit its table, a blobs row without its bytes).
    """
    await check_empty(session)
    counts: dict[str, int] = {}
    archived_blobs: set[str] = set()
    for table in tables():
        source = staged.tables.get(table.name)
        if source is None:
            continue
        try:
            counts[table.name] = await _restore_table(session, table, source, archived_blobs)
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
            raise TargetNotEmpty(f"the target refused a row of {table.name} ({reason}); nothing was imported") from None
    if archived_blobs != staged.blobs:
        raise ArchiveInvalid("the archive's blobs table and its blob files disagree; nothing was imported")
    if _sql.dialect(session) == "postgresql":
        await _reset_sequences(session)
    return counts


async def _restore_table(session: AsyncSession, table: Table, source: Path, archived_blobs: set[str]) -> int:
    kinds = {c.name: column_kind(c) for c in table.columns}
    pk = primary_key(table)
    statement = insert(table).values({c.name: bindparam(c.name, type_=_bind_type(c)) for c in table.columns})
    existing = {tuple(row) for row in await session.execute(select(*pk))}
    count = 0
    async with await anyio.open_file(source, "rb") as handle:
        while batch := await _read_lines(handle, BATCH):
            rows = [_decode(table, kinds, line) for line in batch]
            if table is BLOBS:
                archived_blobs.update(row["sha256"] for row in rows)
            if existing and (clash := [k for row in rows if (k := tuple(row[c.name] for c in pk)) in existing]):
                await session.execute(delete(table).where(key_in(pk, clash)))
            await session.execute(statement, rows)  # executemany: compiled once per table
            count += len(rows)
    return count


def _bind_type(column: Column[Any]) -> Any:
    # JSON binds None as the JSON text 'null'; a nullable column gets SQL NULL, as a missing value reads back.
    if column_kind(column) == "json" and column.nullable:
        return JSON(none_as_null=True)
    return column.type


async def _read_lines(handle: AsyncFile[bytes], n: int) -> list[bytes]:
    lines: list[bytes] = []
    while len(lines) < n and (line := await handle.readline()):
        lines.append(line)
    return lines


def _decode(table: Table, kinds: dict[str, str], line: bytes) -> dict[str, Any]:
    try:
        row = json.loads(line)
        if not isinstance(row, dict) or set(row) != set(kinds):
            raise ValueError("other columns")
        return {name: decode_value(kinds[name], value) for name, value in row.items()}
    except (ValueError, TypeError, ArithmeticError):
        raise ArchiveInvalid(f"a row of {table.name} does not fit the table's columns") from None


async def _reset_sequences(session: AsyncSession) -> None:
    """Move each serial column's sequence past the largest restored id: inserting explicit ids does not
    advance it, and the next insert would collide."""
    quote = session.get_bind().dialect.identifier_preparer
    for table in tables():
        column = table.autoincrement_column
        if column is None:
            continue
        name, col = quote.format_table(table), quote.quote(column.name)
        sql = f"SELECT setval(pg_get_serial_sequence(:table, :column), COALESCE(MAX({col}), 0) + 1, false) FROM {name}"
        await session.execute(text(sql), {"table": name, "column": column.name})
