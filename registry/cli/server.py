"""`registry serve` and `registry db upgrade`."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from registry import observability
from registry.cli._common import EXIT_FAILED, err, fail, out
from registry.db import Database
from registry.settings import Settings

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


def _settings(
    data_dir: Path | None,
    database_url: str | None,
    blob_store_url: str | None,
    host: str | None = None,
    port: int | None = None,
    *,
    create: bool = True,
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
    if create:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner-only: it holds the database
    return settings


async def _prepare(settings: Settings) -> str | None:
    """Sweep the upload spool, migrate, then create the first admin token if there are none. Returns the new
    token, if any."""
    from registry import migrations
    from registry.services import tokens
    from registry.storage.spool import sweep

    # Part files of uploads whose server was killed; live ones (other workers or replicas) are locked.
    if removed := sweep(settings.tmp_dir):
        notice(settings, f"removed {removed} unfinished upload(s) left in {settings.tmp_dir}")

    if settings.s3_create_bucket and settings.resolved_blob_store_url.startswith("s3://"):
        from registry.storage.s3 import S3BlobStore

        store = S3BlobStore.from_settings(settings)
        try:
            if await store.ensure_bucket():
                notice(settings, f"created the bucket {store.bucket}")
        finally:
            await store.close()

    db = Database(settings.resolved_database_url)
    try:
        if settings.migrate_on_start:
            await migrations.upgrade(db)
        else:
            notice(settings, f"waiting for the schema to reach {migrations.head()} (migrated by a separate job)")
            if not await migrations.wait_for_head(db, within=settings.migrate_wait_seconds):
                fail(
                    f"the database schema is not at {migrations.head()} after {settings.migrate_wait_seconds:g}s: "
                    "run `registry db upgrade` (or its job), or set MODELKEEP_MIGRATE_ON_START=true"
                )
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
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="One line per request on stderr.")
    ] = False,
) -> None:
    """Run the registry (migrations are applied first; SQLite + local blobs unless configured)."""
    try:
        from registry.api.server import http_protocol

        http = http_protocol()
    except ImportError:  # uvicorn without httptools (e.g. on PyPy): its own choice
        http = "auto"
    # Owner-only for everything this process and its workers create (the database holds webhook and
    # trigger secrets), as PostgreSQL's server does; folders that exist keep their modes.
    os.umask(0o077)
    settings = _settings(data_dir, database_url, blob_store_url, host, port, create=False)
    if settings.log_format == "json":
        from registry.api.app import configure_logging

        configure_logging(settings.log_level, settings.log_format)
    # The socket first: a port in use is reported before anything is created, migrated or printed, and
    # no other process can take the port while the migrations run.
    sock = listen(settings.host, settings.port)
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Before any metric exists here or in a worker: every process of this server writes its samples there.
        observability.prepare_multiprocess(settings.data_dir)
        token = asyncio.run(_prepare(settings))
        if token:
            out.print(f"[bold]Created the first admin token (shown only once):[/bold]\n{token}", highlight=False)
        for warning in exposure_warnings(settings):
            notice(settings, warning, warning=True)
        notice(
            settings,
            f"modelkeep registry on http://{settings.host}:{settings.port}  "
            f"(database {settings.resolved_database_url.split('://')[0]}, blobs {settings.resolved_blob_store_url})",
        )
        run_uvicorn(sock, settings, http=http, workers=workers, access_log=access_log)
    finally:
        sock.close()


def notice(settings: Settings, message: str, *, warning: bool = False) -> None:
    """A start-up line on stderr: plain text, or a JSON log line under ``MODELKEEP_LOG_FORMAT=json``."""
    if settings.log_format == "json":
        logging.getLogger("registry.serve").log(logging.WARNING if warning else logging.INFO, message)
    elif warning:
        err.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
    else:
        err.print(message, highlight=False)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, as uvicorn would bind it; exits with a message if it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening at once holds the port: Linux lets two SO_REUSEADDR sockets bind one port until one
        # listens. Connections made during the migrations wait in the backlog.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} is in use; pass --port (or set MODELKEEP_PORT)")
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host and --port")
    sock.set_inheritable(True)  # worker processes serve it
    return sock


def run_uvicorn(sock: socket.socket, settings: Settings, *, http: str, workers: int, access_log: bool) -> None:
    import inspect

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG
    from uvicorn.supervisors import Multiprocess

    from registry.api.server import ACCESS_LOGGED_APP

    config = uvicorn.Config(
        ACCESS_LOGGED_APP if access_log else "registry.api.app:from_env",
        factory=True,
        http=http,
        host=settings.host,
        port=settings.port,
        workers=workers,
        access_log=False,  # uvicorn's own lines carry no duration; the app's middleware writes them
        log_level="warning",
        # JSON lines: uvicorn's own records go to the root handler the app installs, not uvicorn's text one.
        log_config=None if settings.log_format == "json" else LOGGING_CONFIG,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    try:
        if workers > 1:
            # uvicorn 0.30-0.3x takes the worker's target; later releases build it from the config.
            if "target" in inspect.signature(Multiprocess).parameters:
                Multiprocess(config, target=server.run, sockets=[sock]).run()  # type: ignore[call-arg]
            else:
                Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    if workers == 1 and not server.started:
        raise typer.Exit(EXIT_FAILED)  # uvicorn logged why (the app failed to load or start)


def exposure_warnings(settings: Settings) -> list[str]:
    """The embedded database's files that others than their owner can read (made by an older release, or
    by hand). Their modes are left as they are: the owner may have had a reason."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return []
    found = []
    for path in (Path(url.database + suffix) for suffix in ("", "-wal", "-shm")):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            found.append(
                f"{path} is readable by others (mode {mode:04o}) and holds webhook and trigger secrets: "
                f"chmod 600 {path}"
            )
    return found


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
