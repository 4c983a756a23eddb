"""`registry serve` and `registry db upgrade`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from registry.cli._common import err, out
from registry.db import Database
from registry.settings import Settings

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


def _settings(
    data_dir: Path | None,
    database_url: str | None,
    blob_store_url: str | None,
    host: str | None = None,
    port: int | None = None,
) -> Settings:
    # Flags win over MODELKEEP_* variables; exporting them lets extra worker processes see the same values.
    for env, value in (
        ("MODELKEEP_DATA_DIR", data_dir),
        ("MODELKEEP_DATABASE_URL", database_url),
        ("MODELKEEP_BLOB_STORE_URL", blob_store_url),
        ("MODELKEEP_HOST", host),
        ("MODELKEEP_PORT", port),
    ):
        if value is not None:
            os.environ[env] = str(value)
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


async def _prepare(settings: Settings) -> str | None:
    """Migrate, then create the first admin token if there are none. Returns the new token, if any."""
    from registry import migrations
    from registry.services import tokens

    db = Database(settings.resolved_database_url)
    try:
        await migrations.upgrade(db)
        if not settings.create_admin_token:
            return None
        async with db.write() as session:
            new = await tokens.bootstrap_admin(session)
            return new.secret if new else None
    finally:
        await db.dispose()


DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder for the embedded database and blobs.", show_default="./modelkeep-data"),
]
DbUrlOpt = Annotated[str | None, typer.Option("--database-url", help="sqlite:///... or postgresql://...")]
BlobOpt = Annotated[str | None, typer.Option("--blob-store-url", help="file:///path or s3://bucket/prefix")]


def serve(
    host: Annotated[str | None, typer.Option("--host", show_default="127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option("--port", show_default="5000")] = None,
    data_dir: DataDirOpt = None,
    database_url: DbUrlOpt = None,
    blob_store_url: BlobOpt = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes (one per core serves the most requests).")
    ] = 1,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log")] = False,
) -> None:
    """Run the registry (migrations are applied first; SQLite + local blobs unless configured)."""
    import uvicorn

    try:
        from registry.api.server import http_protocol

        http = http_protocol()
    except ImportError:  # uvicorn without httptools (e.g. on PyPy): its own choice
        http = "auto"
    settings = _settings(data_dir, database_url, blob_store_url, host, port)
    token = asyncio.run(_prepare(settings))
    if token:
        out.print(f"[bold]Created the first admin token (shown only once):[/bold]\n{token}", highlight=False)
    err.print(
        f"modelkeep registry on http://{settings.host}:{settings.port}  "
        f"(database {settings.resolved_database_url.split('://')[0]}, blobs {settings.resolved_blob_store_url})",
        highlight=False,
    )
    uvicorn.run(
        "registry.api.app:from_env",
        factory=True,
        http=http,
        host=settings.host,
        port=settings.port,
        workers=workers,
        access_log=access_log,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


@db_app.command("upgrade")
def upgrade(data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """Apply database migrations up to the newest."""
    from registry import migrations

    settings = _settings(data_dir, database_url, None)

    async def main() -> None:
        db = Database(settings.resolved_database_url)
        try:
            await migrations.upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(main())
    out.print("database is up to date")
