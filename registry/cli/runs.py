"""`registry runs list|show`: training runs with their params, latest metrics, git state and inputs."""

from __future__ import annotations

from itertools import islice
from typing import Annotated, Any

import typer
from rich.console import Group

from registry.cli._common import JsonOpt, TokenOpt, UrlOpt, client, emit, make_table, when

app = typer.Typer(help="Training runs (logged with the SDK's start_run).", no_args_is_help=True)


def _metric(value: float) -> str:
    return f"{value:.6g}"


@app.command("list")
def list_runs(
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="Only this experiment's runs (name or id).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Show at most N runs.", min=1)] = 20,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first, with their status and latest metrics."""
    with client(url, token) as api:
        experiment_id = int(api.get_experiment(experiment)["id"]) if experiment else None
        runs = list(islice(api.list_runs(experiment_id=experiment_id, page_size=min(limit, 1000)), limit))

    def table(rows: list[dict[str, Any]]) -> Any:
        # Who ran it and its git state are in `runs show` and --json: the list stays readable at 80 columns.
        columns = ["run", "name", *([] if experiment else ["experiment"]), "status", "started", "metrics"]
        return make_table(
            "Runs" + (f" of {experiment}" if experiment else ""),
            columns,
            (
                (
                    r["id"],
                    r["name"],
                    *([] if experiment else [r["experiment_id"]]),
                    r["status"],
                    when(r["start_time"]),
                    ", ".join(f"{m['key']}={_metric(m['value'])}" for m in r["metrics"]),
                )
                for r in rows
            ),
            keep=[0, 1],
        )

    emit(runs, as_json, table)


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (as `registry runs list` prints it).")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one run: status, times, git state, params, latest metrics, tags and input artifacts."""
    with client(url, token) as api:
        run = api.get_run(run_id)

    def table(r: dict[str, Any]) -> Any:
        git = r["git"]
        commit = (git["commit"] or "-") + (" (dirty)" if git["dirty"] else "")
        fields = make_table(
            f"Run {r['id']}",
            ["field", "value"],
            [
                ("name", r["name"]),
                ("experiment", r["experiment_id"]),
                ("status", r["status"]),
                ("user", r["user"]),
                ("started", when(r["start_time"])),
                ("ended", when(r["end_time"])),
                ("git", f"{commit} on {git['branch']}" if git["branch"] else commit),
            ]
            + [(f"tag {k}", v) for k, v in sorted(r["tags"].items())],
        )
        parts: list[Any] = [fields]
        if r["params"]:
            parts.append(make_table("Params", ["param", "value"], sorted(r["params"].items())))
        if r["metrics"]:
            parts.append(
                make_table(
                    "Metrics (latest)",
                    ["metric", "value", "step"],
                    ((m["key"], _metric(m["value"]), m["step"]) for m in r["metrics"]),
                )
            )
        if r["inputs"]:
            parts.append(
                make_table(
                    "Inputs",
                    ["artifact", "version", "kind", "digest"],
                    ((a["name"], a["version"], a["kind"], a["digest"][:12]) for a in r["inputs"]),
                )
            )
        return Group(*parts)

    emit(run, as_json, table)
