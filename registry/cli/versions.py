"""`registry versions list|show`, `push`, `pull`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from registry.cli._common import (
    JsonOpt,
    TokenOpt,
    UrlOpt,
    client,
    emit,
    file_argument,
    make_table,
    out,
    transfer_progress,
    when,
)

app = typer.Typer(help="Model versions.", no_args_is_help=True)


@app.command("list")
def list_versions(
    model: Annotated[str, typer.Argument(help="Model name.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a model's versions (deleted numbers are never reused)."""
    with client(url, token) as api:
        items = list(api.list_versions(model))

    def table(rows: list[dict[str, Any]]) -> Any:
        return make_table(
            f"Versions of {model}",
            ["version", "aliases", "run", "source", "digest", "created"],
            (
                (
                    v["version"],
                    ", ".join(v.get("aliases") or []),
                    v["run_id"],
                    v["source"],
                    v["digest"][:12],
                    f"{when(v['created_at'])} by {v['created_by']}",
                )
                for v in rows
            ),
        )

    emit(items, as_json, table)


@app.command("show")
def show(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version number.", min=1)],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a version: its files, aliases and who moved which alias to/from it, when and why."""
    with client(url, token) as api:
        data = api.get_version(model, version)

    def table(v: dict[str, Any]) -> Any:
        out.print(
            make_table(
                f"{v['model']} v{v['version']}",
                ["field", "value"],
                [
                    ("run", v["run_id"]),
                    ("source", v["source"]),
                    ("digest", v["digest"]),
                    ("aliases", ", ".join(v["aliases"]) or "-"),
                    ("created", f"{v['created_at']} by {v['created_by']}"),
                    ("description", v["description"]),
                ],
            )
        )
        out.print(
            make_table("Files", ["path", "size", "sha256"], ((f["path"], f["size"], f["sha256"]) for f in v["files"]))
        )
        return make_table(
            "Promotions",
            ["when", "alias", "from", "to", "action", "actor", "reason"],
            (
                (
                    p["created_at"],
                    p["alias"],
                    p["from_version"],
                    p["to_version"],
                    p["action"],
                    p["actor"],
                    p["reason"],
                )
                for p in v["promotions"]
            ),
        )

    emit(data, as_json, table)


def push(
    model: Annotated[str, typer.Argument(help="Model name (created if missing).")],
    path: Annotated[Path, typer.Argument(help="File or folder to register.", exists=True)],
    run: Annotated[str | None, typer.Option("--run", help="Run that produced it (lineage).")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a local file or folder as the next version of MODEL."""
    with (
        file_argument("PATH", path),
        client(url, token) as api,
        transfer_progress(f"push {model}") as (on_total, advance),
    ):
        version = api.push(model, path, run_id=run, description=description, progress=advance, on_total=on_total)
    emit(
        version,
        as_json,
        lambda v: (
            f"[green]registered[/green] {v['model']} v{v['version']} "
            f"({len(v['files'])} files, digest {v['digest'][:12]})"
        ),
    )


def pull(
    ref: Annotated[str, typer.Argument(help="MODEL@ALIAS or MODEL/VERSION.")],
    dest: Annotated[Path, typer.Argument(help="Folder to download into (missing or empty, unless --force).")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace a non-empty folder: it then holds exactly this version.")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download a version's files and verify every sha256.

    Files land in a folder beside DEST and are swapped in once all are verified: DEST never holds a mix.

    DEST must be missing or empty; --force replaces what it holds with exactly this version."""
    with (
        file_argument("DEST", dest),
        client(url, token) as api,
        transfer_progress(f"pull {ref}") as (on_total, advance),
    ):
        version = api.pull(ref, dest, force=force, progress=advance, on_total=on_total)
    emit(
        version,
        as_json,
        lambda v: f"[green]pulled[/green] {v['model']} v{v['version']} into {dest} ({len(v['files'])} files verified)",
    )
