"""`registry promote`, `registry rollback`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from registry.cli._common import JsonOpt, TokenOpt, UrlOpt, alias_option, client, emit


def _describe(p: dict[str, Any], model: str) -> str:
    if p.get("changed") is False:
        return f"{model}@{p['alias']} already points at v{p['to_version']}; nothing changed"
    before = f"v{p['from_version']}" if p.get("from_version") is not None else "(unset)"
    forced = " [yellow](forced past the gate policy)[/yellow]" if p.get("forced") else ""
    gate = f", gate run #{p['gate_run_id']}" if p.get("gate_run_id") else ""
    return (
        f"[green]{model}@{p['alias']}[/green]: {before} → v{p['to_version']} "
        f"({p['action']} by {p['actor']}{gate}){forced}"
    )


def promote(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version to point the alias at.", min=1)],
    to: Annotated[str, typer.Option("--to", help="Alias to move (staging, production ...).")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why; kept in the history.")] = None,
    expect: Annotated[
        str | None,
        typer.Option("--expect", help="Fail unless the alias still points at this version ('none': unset)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Move past a gate policy (maintainers; needs --reason; audited).")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point an alias at a version, recording who, when and why."""
    alias = alias_option(to, "--to")
    expected: int | None = None
    if expect is not None:
        text = expect.lower().lstrip("v")
        if expect.lower() == "none":
            expected = 0
        elif text.isdigit() and int(text) > 0:
            expected = int(text)
        else:
            raise typer.BadParameter("use a version number or 'none'", param_hint="--expect")
    with client(url, token) as api:
        result = api.set_alias(model, alias, version, reason=reason, expect=expected, force=force)
    emit(result | {"alias": alias}, as_json, lambda p: _describe(p, model))


def rollback(
    model: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Option("--alias", help="Alias to move back.")],
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move an alias back to the version that held it before (recorded as a promotion)."""
    name = alias_option(alias, "--alias")
    with client(url, token) as api:
        result = api.rollback(model, name, reason=reason)
    emit(result, as_json, lambda p: _describe(p, model))
