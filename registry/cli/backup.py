"""`registry export` and `registry import`: a consistent archive of the registry (or of one model), restored
into an empty registry on either database engine. Both work on the database and blob store directly
(``--database-url``/``--data-dir``/``--blob-store-url`` or their ``MODELKEEP_`` variables, the embedded
``./modelkeep-data`` otherwise), like `registry token create` without ``--url``; see docs/backup.md."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from registry.cli._common import EXIT_USAGE, JsonOpt, emit, fail
from registry.cli._direct import (
    BlobOpt,
    DataDirOpt,
    DbOpt,
    direct_settings,
    has_schema,
    run_on_database,
    shown_url,
    sqlite_path,
)
from registry.db import Database

ArchiveArg = Annotated[Path, typer.Argument(help="The archive file (.tar, or .tar.gz / .tgz to compress).")]


def export(
    archive: ArchiveArg,
    model: Annotated[str | None, typer.Option("--model", help="Only this model and what it needs.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing archive file.")] = False,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
    blob_store_url: BlobOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a consistent archive of the registry, or of one model (the server may keep running)."""
    from registry.services import backup
    from registry.storage import open_store

    settings = direct_settings(database_url, data_dir, blob_store_url)
    url = settings.resolved_database_url
    source = sqlite_path(url)
    if source is not None and not source.exists():
        fail(f"no database at {source}: name the registry's with --data-dir or --database-url", EXIT_USAGE)
    if archive.is_dir() or not archive.parent.is_dir():
        fail(f"{archive}: name a file in an existing folder", EXIT_USAGE)
    if archive.exists() and not force:
        fail(f"{archive} exists; pass --force to replace it", EXIT_USAGE)

    async def main() -> dict[str, Any]:
        started = time.monotonic()
        db = Database(url, pool_size=1)
        try:
            if not await has_schema(db):
                fail(f"{shown_url(url)} has no Modelkeep schema: is it the registry's database?", EXIT_USAGE)
            # Table rows are spooled beside the archive (the folder chosen for it has the room), then the
            # read transaction ends before the blobs are copied: they are immutable, and a long-held
            # snapshot would keep SQLite from checkpointing and PostgreSQL from vacuuming meanwhile.
            with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".modelkeep-export-") as spool:
                async with db.read() as session:
                    snap = await backup.snapshot(session, spool=Path(spool), model=model)
                store = open_store(settings)
                try:
                    written = await backup.write_archive(snap, store=store, path=archive)
                finally:
                    await store.close()
        finally:
            await db.dispose()
        return {
            "archive": str(written.path),
            "bytes": written.bytes,
            "scope": model or "all",
            "schema_revision": snap.revision,
            "rows": sum(written.rows.values()),
            "tables": {name: n for name, n in written.rows.items() if n},
            "blobs": written.blobs,
            "blob_bytes": written.blob_bytes,
            "seconds": round(time.monotonic() - started, 3),
        }

    data = run_on_database(main(), url)
    emit(
        data,
        as_json,
        lambda d: (
            f"exported {d['scope']} to {d['archive']}: {d['rows']} rows, {d['blobs']} blobs "
            f"({d['blob_bytes']} bytes), archive {d['bytes']} bytes in {d['seconds']} s"
        ),
    )


def import_archive(
    archive: Annotated[Path, typer.Argument(help="An archive written by `registry export`.")],
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
    blob_store_url: BlobOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore an archive into an empty registry (a new SQLite file or an empty PostgreSQL database)."""
    from registry import migrations
    from registry.services import backup
    from registry.storage import open_store

    if not archive.is_file():
        fail(f"{archive}: no such archive file", EXIT_USAGE)
    settings = direct_settings(database_url, data_dir, blob_store_url)
    url = settings.resolved_database_url
    target = sqlite_path(url)
    is_new = target is not None and not target.exists()

    async def main() -> dict[str, Any]:
        started = time.monotonic()
        manifest = await backup.read_manifest(archive)  # fails fast on a foreign archive or revision
        if is_new:
            assert target is not None
            if not target.parent.is_dir():
                fail(f"the folder {target.parent} does not exist", EXIT_USAGE)
        db = Database(url, pool_size=1)
        try:
            if not is_new and await has_schema(db):
                async with db.read() as session:
                    await backup.check_empty(session)
            # Staged in the spool folder beside local blobs (so a put is a rename), owner-only.
            settings.tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            store = open_store(settings)
            try:
                with tempfile.TemporaryDirectory(dir=settings.tmp_dir, prefix="import-") as spool:
                    staged = await backup.stage(archive, manifest=manifest, store=store, spool=Path(spool))
                    # Only a verified archive creates or migrates the target.
                    await migrations.upgrade(db)
                    async with db.write() as session:
                        counts = await backup.restore(session, staged=staged)
            finally:
                await store.close()
        finally:
            await db.dispose()
        return {
            "archive": str(archive),
            "database": shown_url(url),
            "blob_store": settings.resolved_blob_store_url,
            "scope": manifest.scope.get("model") or "all",
            "schema_revision": manifest.revision,
            "rows": sum(counts.values()),
            "tables": {name: n for name, n in counts.items() if n},
            "blobs": len(staged.blobs),
            "seconds": round(time.monotonic() - started, 3),
        }

    data = run_on_database(main(), url)
    emit(
        data,
        as_json,
        lambda d: (
            f"imported {d['scope']} from {d['archive']} into {d['database']}: {d['rows']} rows, "
            f"{d['blobs']} blobs in {d['seconds']} s"
        ),
    )
