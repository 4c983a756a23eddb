"""Options and helpers of the commands that work on a registry's database and blob store directly, with no
server (`registry export`, `import`, `gc`): where the database is, how it is shown, whether it has a schema."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from registry.cli._common import EXIT_FAILED, fail
from registry.db import Database
from registry.settings import Settings

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url", envvar="MODELKEEP_DATABASE_URL", help="The database (default: <data dir>/registry.db)."
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="MODELKEEP_DATA_DIR",
        help="The registry's data folder (embedded database and blobs).",
        show_default="./modelkeep-data",
    ),
]
BlobOpt = Annotated[
    str | None,
    typer.Option(
        "--blob-store-url",
        envvar="MODELKEEP_BLOB_STORE_URL",
        help="file:///path or s3://bucket/prefix (default: <data dir>/blobs).",
    ),
]


def direct_settings(database_url: str | None, data_dir: Path | None, blob_store_url: str | None) -> Settings:
    overrides: dict[str, Any] = {}
    if database_url:
        overrides["database_url"] = database_url
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if blob_store_url:
        overrides["blob_store_url"] = blob_store_url
    return Settings(**overrides)


def shown_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


async def has_schema(db: Database) -> bool:
    async with db.read_engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    return "alembic_version" in names


def run_on_database(main: Any, url: str) -> Any:
    try:
        return asyncio.run(main)
    except OSError as exc:
        if exc.filename is not None:
            raise  # a local file: the entry point reports it (exit 2)
        fail(f"cannot open the database {shown_url(url)}: {exc}", EXIT_FAILED)
