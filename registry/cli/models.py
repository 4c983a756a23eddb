"""`registry models list|show`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from registry.cli._common import JsonOpt, TokenOpt, UrlOpt, client, emit, make_table

app = typer.Typer(help="Registered models.", no_args_is_help=True)


@app.command("list")
def list_models(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List registered models with their latest version and aliases."""
    with client(url, token) as api:
        items = list(api.list_models())

    def table(rows: list[dict[str, Any]]) -> Any:
        return make_table(
            "Models",
            ["name", "latest", "aliases", "description"],
            (
                (
                    m["name"],
                    m["latest_version"],
                    ", ".join(f"{a['alias']}→v{a['version']}" for a in m["aliases"]),
                    m["description"],
                )
                for m in rows
            ),
        )

    emit(items, as_json, table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one model: description, tags, aliases."""
    with client(url, token) as api:
        model = api.get_model(name)

    def table(m: dict[str, Any]) -> Any:
        rows = [
            ("name", m["name"]),
            ("description", m["description"]),
            ("latest version", m["latest_version"]),
            ("created", f"{m['created_at']} by {m['created_by']}"),
        ]
        rows += [
            (f"alias {a['alias']}", f"v{a['version']} (by {a['updated_by']}, {a['updated_at']})") for a in m["aliases"]
        ]
        rows += [(f"tag {k}", v) for k, v in m["tags"].items()]
        return make_table(None, ["field", "value"], rows)

    emit(model, as_json, table)
