"""`registry token create|list|revoke`: through the server's API with an admin token, or on the database.

Through the server (``--url``/``--token``, or ``MODELKEEP_URL``/``MODELKEEP_TOKEN`` like every other
command) needs no access to the database. Directly on the database (``--data-dir``, ``--database-url`` or
their ``MODELKEEP_`` variables, the embedded ``./modelkeep-data`` otherwise) is how the first admin token
is made or a lost one replaced; it refuses a database that does not exist or has no schema unless
``--init`` says to create one, so a command run in the wrong folder never makes a new, empty registry whose
tokens the running server rejects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from registry.cli._common import EXIT_FAILED, EXIT_USAGE, JsonOpt, TokenOpt, UrlOpt, client, emit, fail, make_table
from registry.client import RegistryClient
from registry.db import Database
from registry.domain.auth import Role
from registry.services import tokens
from registry.services.auth import Actor
from registry.settings import Settings

app = typer.Typer(
    help="API tokens: through the server with an admin token (--url/--token), or on its database directly.",
    no_args_is_help=True,
)
T = TypeVar("T")
CLI_ACTOR = Actor(name="cli", role=Role.admin)
ROW_KEYS = ("name", "role", "prefix", "created_by", "created_at", "expires_at", "revoked_at")
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="MODELKEEP_DATABASE_URL",
        help="Work on this database directly (default: <data dir>/registry.db).",
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="MODELKEEP_DATA_DIR",
        help="The server's data folder, for its embedded database.",
        show_default="./modelkeep-data",
    ),
]
InitOpt = Annotated[
    bool, typer.Option("--init", help="Create (or migrate) the database if it does not exist or has no schema.")
]


@dataclass(frozen=True)
class Target:
    """Where a token command goes: the server's API, or the database directly."""

    url: str | None
    token: str | None
    database_url: str | None
    data_dir: Path | None
    init: bool
    api: bool


def target(
    ctx: typer.Context,
    url: str | None,
    token: str | None,
    database_url: str | None,
    data_dir: Path | None,
    init: bool,
) -> Target:
    """Flags on the command line decide; without them ``MODELKEEP_URL`` means the API, else the database."""

    def given(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is not None and source.name == "COMMANDLINE"

    to_api = given("url") or given("token")
    to_db = given("database_url") or given("data_dir") or init
    if to_api and to_db:
        fail(
            "use either the server (--url/--token) or its database (--database-url/--data-dir/--init), not both",
            EXIT_USAGE,
        )
    api = to_api or (not to_db and url is not None)
    return Target(url, token, database_url, data_dir, init, api)


class _NoSchema(Exception):
    pass


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def run_in_db(where: Target, write: bool, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    overrides: dict[str, Any] = {}
    if where.database_url:
        overrides["database_url"] = where.database_url
    if where.data_dir is not None:
        overrides["data_dir"] = where.data_dir
    settings = Settings(**overrides)
    resolved = settings.resolved_database_url
    url = make_url(resolved)
    if url.get_backend_name() == "sqlite" and url.database:
        path = Path(url.database)
        if not path.exists():
            if not where.init:
                fail(
                    f"no database at {path}. Name the server's: --data-dir (its data folder) or --database-url / "
                    "MODELKEEP_DATABASE_URL; or go through the server with --url and an admin --token; "
                    "--init creates a new database there on purpose",
                    EXIT_USAGE,
                )
            # The database's folder, nothing else; owner-only, since the database holds secrets.
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def main() -> T:
        from sqlalchemy import inspect

        from registry import migrations

        db = Database(resolved)
        try:
            if not where.init:
                async with db.read_engine.connect() as conn:
                    tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
                if "alembic_version" not in tables:
                    raise _NoSchema
            await migrations.upgrade(db)
            async with db.write() if write else db.read() as session:
                return await work(session)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except _NoSchema:
        fail(
            f"{_shown(resolved)} has no Modelkeep schema: is it the server's database? Start `registry serve` on "
            "it or run `registry db upgrade`, or pass --init to set it up here",
            EXIT_USAGE,
        )
    except OSError as exc:  # the database server cannot be reached
        fail(f"cannot open the database {_shown(resolved)}: {exc}", EXIT_FAILED)


def run_on_api(where: Target, call: Callable[[RegistryClient], T]) -> T:
    with client(where.url, where.token) as api:
        return call(api)


def _row(t: Any) -> dict[str, Any]:
    if isinstance(t, dict):  # from the API: the same keys as from the database
        return {key: t.get(key) for key in ROW_KEYS}
    return {
        "name": t.name,
        "role": t.role,
        "prefix": t.prefix,
        "created_by": t.created_by,
        "created_at": t.created_at.isoformat() if t.created_at else None,
        "expires_at": t.expires_at.isoformat() if t.expires_at else None,
        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
    }


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Unique token name (who or what uses it).")],
    role: Annotated[str, typer.Option("--role", help="reader, writer, maintainer or admin.")] = "reader",
    expires_in_days: Annotated[float | None, typer.Option("--expires-in-days", min=0.0)] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
    init: InitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a token and print it once (it is stored only as a hash)."""
    parsed = tokens.parse_role(role)
    where = target(ctx, url, token, database_url, data_dir, init)
    if where.api:
        made = run_on_api(where, lambda api: api.create_token(name, parsed.name, expires_in_days or None))
        data = _row(made) | {"token": made["token"]}
    else:
        expires = timedelta(days=expires_in_days) if expires_in_days else None

        async def work(session: AsyncSession) -> dict[str, Any]:
            new = await tokens.create(session, name=name, role=parsed, actor=CLI_ACTOR, expires_in=expires)
            return _row(new.token) | {"token": new.secret}

        data = run_in_db(where, True, work)
    emit(
        data,
        as_json,
        lambda d: (
            f"token [bold]{d['name']}[/bold] ({d['role']}): {d['token']}\n"
            "[dim]store it now: it is not shown again[/dim]"
        ),
    )


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    url: UrlOpt = None,
    token: TokenOpt = None,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
    init: InitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """List tokens (never their secrets)."""
    where = target(ctx, url, token, database_url, data_dir, init)
    if where.api:
        rows = [_row(t) for t in run_on_api(where, lambda api: api.list_tokens())]
    else:

        async def work(session: AsyncSession) -> list[dict[str, Any]]:
            return [_row(t) for t in await tokens.list_tokens(session)]

        rows = run_in_db(where, False, work)
    emit(
        rows,
        as_json,
        lambda rows: make_table(
            "Tokens",
            ["name", "role", "prefix", "created", "expires", "revoked"],
            ((r["name"], r["role"], r["prefix"], r["created_at"], r["expires_at"], r["revoked_at"]) for r in rows),
        ),
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Token name.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token; requests with it fail from now on."""
    where = target(ctx, url, token, database_url, data_dir, False)
    if where.api:
        data = _row(run_on_api(where, lambda api: api.revoke_token(name)))
    else:

        async def work(session: AsyncSession) -> dict[str, Any]:
            return _row(await tokens.revoke(session, name=name, actor=CLI_ACTOR))

        data = run_in_db(where, True, work)
    emit(data, as_json, lambda d: f"revoked token {d['name']}")
