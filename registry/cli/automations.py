"""`registry automations ...`: rules (YAML), the action queue, inbound triggers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from registry.cli._common import JsonOpt, TokenOpt, UrlOpt, client, emit, err, file_argument, make_table

app = typer.Typer(help="Automation rules (run gates, promote) and inbound triggers.", no_args_is_help=True)
triggers_app = typer.Typer(help="Secrets that let outside systems sign gate-run requests.", no_args_is_help=True)
app.add_typer(triggers_app, name="triggers")


@app.command("apply")
def apply(
    path: Annotated[Path, typer.Argument(help="Rules file (YAML).", exists=True, dir_okay=False)],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create or replace the rules declared in PATH (by name)."""
    with file_argument("PATH", path):
        text = path.read_text()
    with client(url, token) as api:
        rows = api.json("POST", "/api/v1/automations/rules", json={"yaml": text})
    emit(rows, as_json, lambda rs: "applied " + ", ".join(r["name"] for r in rs))
    for row in rows:
        for warning in row.get("warnings", []):
            err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


@app.command("list")
def list_rules(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List rules."""
    with client(url, token) as api:
        rows = api.json("GET", "/api/v1/automations/rules")
    emit(
        rows,
        as_json,
        lambda rs: make_table(
            "Rules",
            ["name", "on", "model", "if", "action", "params", "enabled"],
            (
                (r["name"], r["on"], r["model"] or "*", r["conditions"] or "", r["action"], r["params"], r["enabled"])
                for r in rs
            ),
        ),
    )


@app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="Rule name.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a rule."""
    with client(url, token) as api:
        emit(api.json("DELETE", f"/api/v1/automations/rules/{name}"), as_json, lambda d: f"removed rule {name}")


def job_outcome(job: dict[str, Any]) -> str:
    """A job's result or error as a line of text: what a gate run found, where a promotion moved the alias."""
    if job.get("error"):
        return str(job["error"])
    result = job.get("result") or {}
    if "gate_run_id" in result:
        return f"gate run #{result['gate_run_id']}: {result.get('verdict')}"
    if {"alias", "version"} <= result.keys():
        moved = result.get("changed", True)
        return (
            f"{result['alias']} → v{result['version']}"
            if moved
            else f"{result['alias']} already at v{result['version']}"
        )
    return ", ".join(f"{key}={value}" for key, value in result.items())


@app.command("jobs")
def jobs(
    status: Annotated[str | None, typer.Option("--status")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queued and finished gate runs and promotions requested by rules or hooks."""
    with client(url, token) as api:
        rows = api.json("GET", "/api/v1/automations/jobs", params={"status": status} if status else None)

    def table(rs: list[dict[str, Any]]) -> Any:
        return make_table(
            "Automation jobs",
            ["id", "kind", "status", "actor", "model", "version", "result/error"],
            (
                (
                    r["id"],
                    r["kind"],
                    r["status"],
                    r["actor"],
                    r["params"].get("model"),
                    r["params"].get("version"),
                    job_outcome(r),
                )
                for r in rs
            ),
        )

    emit(rows, as_json, table)


@triggers_app.command("add")
def add_trigger(
    name: Annotated[str, typer.Argument(help="Trigger name.")],
    model: Annotated[str | None, typer.Option("--model", help="Only for this model.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a trigger; prints its signing secret once."""
    with client(url, token) as api:
        data = api.json("POST", "/api/v1/automations/triggers", json={"name": name, "model": model})
    emit(
        data,
        as_json,
        lambda d: (
            f"trigger {d['name']}: secret (shown once) {d['secret']}\n"
            "sign POST /api/v1/hooks/gate-runs with it (Standard Webhooks)"
        ),
    )


@triggers_app.command("list")
def list_triggers(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List triggers (never their secrets)."""
    with client(url, token) as api:
        rows = api.json("GET", "/api/v1/automations/triggers")
    emit(
        rows,
        as_json,
        lambda rs: make_table(
            "Triggers",
            ["name", "model", "enabled", "created by"],
            ((r["name"], r["model"] or "*", r["enabled"], r["created_by"]) for r in rs),
        ),
    )


@triggers_app.command("remove")
def remove_trigger(
    name: Annotated[str, typer.Argument(help="Trigger name.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a trigger."""
    with client(url, token) as api:
        emit(api.json("DELETE", f"/api/v1/automations/triggers/{name}"), as_json, lambda d: f"removed trigger {name}")
