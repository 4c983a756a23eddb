"""`registry experiments list`: the experiments runs are grouped in."""

from __future__ import annotations

from typing import Any

import typer

from registry.cli._common import JsonOpt, TokenOpt, UrlOpt, client, emit, make_table, when

app = typer.Typer(help="Experiments: named groups of runs.", no_args_is_help=True)


@app.command("list")
def list_experiments(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List experiments, oldest first (`registry runs list --experiment NAME` shows their runs)."""
    with client(url, token) as api:
        items = list(api.list_experiments())

    def table(rows: list[dict[str, Any]]) -> Any:
        return make_table(
            "Experiments",
            ["id", "name", "stage", "created"],
            ((e["id"], e["name"], e["lifecycle_stage"], when(e["created_at"])) for e in rows),
            keep=[0, 1],
        )

    emit(items, as_json, table)
