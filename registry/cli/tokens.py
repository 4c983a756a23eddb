"""`registry token create|list|revoke`: talks to the database directly (this is how admins bootstrap)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from registry.cli._common import JsonOpt, emit, make_table
from registry.db import Database
from registry.domain.auth import Role
from registry.services import tokens
from registry.services.auth import Actor
from registry.settings import Settings

app = typer.Typer(
    help="API tokens (uses the database directly: run where the server's settings are).", no_args_is_help=True
)
T = TypeVar("T")
CLI_ACTOR = Actor(name="cli", role=Role.admin)
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url", envvar="MODELKEEP_DATABASE_URL", help="Database URL (default: the embedded SQLite)."
    ),
]


def run_in_db(database_url: str | None, write: bool, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    settings = Settings(database_url=database_url) if database_url else Settings()

    async def main() -> T:
        from registry import migrations

        db = Database(settings.resolved_database_url)
        try:
            await migrations.upgrade(db)
            async with db.write() if write else db.read() as session:
                return await work(session)
        finally:
            await db.dispose()

    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)  # the database's folder, nothing else
    return asyncio.run(main())


def _row(t: Any) -> dict[str, Any]:
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
    name: Annotated[str, typer.Argument(help="Unique token name (who or what uses it).")],
    role: Annotated[str, typer.Option("--role", help="reader, writer, maintainer or admin.")] = "reader",
    expires_in_days: Annotated[float | None, typer.Option("--expires-in-days", min=0.0)] = None,
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a token and print it once (it is stored only as a hash)."""
    parsed = tokens.parse_role(role)
    expires = timedelta(days=expires_in_days) if expires_in_days else None

    async def work(session: AsyncSession) -> dict[str, Any]:
        new = await tokens.create(session, name=name, role=parsed, actor=CLI_ACTOR, expires_in=expires)
        return _row(new.token) | {"token": new.secret}

    data = run_in_db(database_url, True, work)
    emit(
        data,
        as_json,
        lambda d: (
            f"token [bold]{d['name']}[/bold] ({d['role']}): {d['token']}\n"
            "[dim]store it now: it is not shown again[/dim]"
        ),
    )


@app.command("list")
def list_tokens(database_url: DbOpt = None, as_json: JsonOpt = False) -> None:
    """List tokens (never their secrets)."""

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return [_row(t) for t in await tokens.list_tokens(session)]

    emit(
        run_in_db(database_url, False, work),
        as_json,
        lambda rows: make_table(
            "Tokens",
            ["name", "role", "prefix", "created", "expires", "revoked"],
            ((r["name"], r["role"], r["prefix"], r["created_at"], r["expires_at"], r["revoked_at"]) for r in rows),
        ),
    )


@app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="Token name.")],
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token; requests with it fail from now on."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _row(await tokens.revoke(session, name=name, actor=CLI_ACTOR))

    emit(run_in_db(database_url, True, work), as_json, lambda d: f"revoked token {d['name']}")
