"""`registry gc`: reclaim the blobs nothing references, past a grace period (docs/storage.md).

It works on the database and blob store directly (``--database-url``/``--data-dir``/``--blob-store-url`` or
their ``MODELKEEP_`` variables), like `registry export`: reclaiming storage is an operator's task on the
machine that holds the credentials of both, it needs no running server, and the scheduled job
(``blobs.collect_garbage``) already covers the running case. It is safe while servers run: see
``registry.services.gc`` for how uploads and references racing it are kept whole.
"""

from __future__ import annotations

from datetime import timedelta
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


def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be deleted; delete nothing.")] = False,
    grace_hours: Annotated[
        float | None,
        typer.Option(
            "--grace-hours",
            min=0,
            help="Keep unreferenced blobs stored more recently than this (default: MODELKEEP_GC_GRACE_HOURS, 24).",
        ),
    ] = None,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
    blob_store_url: BlobOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete blobs that no version, artifact, run or monitoring record references, once past the grace period."""
    from registry.services import gc as collector
    from registry.storage import open_store

    settings = direct_settings(database_url, data_dir, blob_store_url)
    url = settings.resolved_database_url
    source = sqlite_path(url)
    if source is not None and not source.exists():
        fail(f"no database at {source}: name the registry's with --data-dir or --database-url", EXIT_USAGE)
    hours = settings.gc_grace_hours if grace_hours is None else grace_hours

    async def main() -> dict[str, Any]:
        db = Database(url, pool_size=1)
        try:
            if not await has_schema(db):
                fail(f"{shown_url(url)} has no Modelkeep schema: is it the registry's database?", EXIT_USAGE)
            store = open_store(settings)
            try:
                report = await collector.collect(db, store, grace=timedelta(hours=hours), dry_run=dry_run)
            finally:
                await store.close()
        finally:
            await db.dispose()
        return report.as_dict()

    data = run_on_database(main(), url)
    emit(data, as_json, _render)


def _render(data: dict[str, Any]) -> str:
    verb = "would delete" if data["dry_run"] else "deleted"
    return (
        f"{verb} {data['blobs']} unreferenced blobs ({data['bytes']} bytes) "
        f"stored before {data['cutoff']} (grace {data['grace_hours']:g} h)"
    )
