"""`registry monitor ...`: baselines, production data, the monitor spec, drift checks and their status."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from registry.cli._common import (
    EXIT_USAGE,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    alias_option,
    client,
    emit,
    err,
    fail,
    file_argument,
    make_table,
    out,
    when,
    writable_file,
)
from registry.client.api import parse_ref
from registry.errors import InvalidInput

app = typer.Typer(
    help="Production monitoring: reference data per version, production rows in, drift checks and alerts.",
    no_args_is_help=True,
)
baseline_app = typer.Typer(help="The reference data a version's production rows are compared with.")
app.add_typer(baseline_app, name="baseline")
VERDICTS = {"ok": "no drift", "drift": "DRIFT", "insufficient_data": "too few rows"}
EXIT_BY_STATUS = {"ok": 0, "drift": 1, "insufficient_data": 3}
"""``registry monitor check``: 0 no drift, 1 drift, 3 not enough rows; 2 bad input and 4 unknown model, version,
alias or baseline come from the error kinds."""

DataOpt = Annotated[
    Path, typer.Option("--data", help="Parquet, CSV or JSON lines (by suffix).", exists=True, dir_okay=False)
]


def _columns(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def _ref(ref: str) -> tuple[str, str | None, int | None]:
    try:
        model, alias, version = parse_ref(ref)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint="REF") from None
    return model, alias_option(alias, "REF") if alias else None, version


def _plain(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    """Like ``emit``, for text that comes from users (column names, a spec's YAML): printed as it is, since rich
    would read ``[amount]`` in it as markup and drop it."""
    if as_json:
        emit(data, as_json)
    else:
        out.print(text(data), markup=False, highlight=False)


def _baseline_text(d: dict[str, Any]) -> str:
    schema = d["schema"]
    kinds = ", ".join(f"{c['name']} ({c['kind']})" for c in schema.get("columns", []))
    roles = ", ".join(f"{r}: {schema[r]}" for r in ("prediction", "target", "id", "timestamp") if schema.get(r))
    return (
        f"{d['model']} v{d['version']}: baseline of {d['rows']} rows from {d['source']} (sha256 {d['digest'][:12]})\n"
        f"monitored: {kinds}" + (f"\n{roles}" if roles else "")
    )


@baseline_app.command("set")
def baseline_set(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version number.", min=1)],
    data: Annotated[
        Path | None, typer.Option("--data", help="Reference data (Parquet or CSV).", exists=True, dir_okay=False)
    ] = None,
    artifact: Annotated[str | None, typer.Option("--artifact", help="A dataset artifact version NAME:V.")] = None,
    prediction: Annotated[str | None, typer.Option("--prediction", help="The prediction column.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="The label column (not drift-monitored).")] = None,
    id_column: Annotated[str | None, typer.Option("--id", help="The row id column (joins late labels).")] = None,
    timestamp: Annotated[str | None, typer.Option("--timestamp", help="The event time column.")] = None,
    columns: Annotated[str | None, typer.Option("--columns", help="Monitor only these (a,b,c).")] = None,
    exclude: Annotated[str | None, typer.Option("--exclude", help="Never monitor these (a,b).")] = None,
    categorical: Annotated[str | None, typer.Option("--categorical", help="Read these as categories.")] = None,
    numerical: Annotated[str | None, typer.Option("--numerical", help="Read these as numbers.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Bind reference data to MODEL VERSION and store its profile (once per version)."""
    if (data is None) == (artifact is None):
        fail("give either --data FILE or --artifact NAME:VERSION", EXIT_USAGE)
    with client(url, token) as api, file_argument("--data", data):
        found = api.set_monitor_baseline(
            model, version, data, artifact=artifact, prediction=prediction, target=target, id=id_column,
            timestamp=timestamp, columns=_columns(columns), exclude=_columns(exclude),
            categorical=_columns(categorical), numerical=_columns(numerical),
        )  # fmt: skip
    _plain(found, as_json, _baseline_text)


@baseline_app.command("show")
def baseline_show(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version number.", min=1)],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a version's baseline: rows, monitored columns and their kinds, digest."""
    with client(url, token) as api:
        _plain(api.monitor_baseline(model, version), as_json, _baseline_text)


@app.command("ingest")
def ingest(
    ref: Annotated[str, typer.Argument(help="MODEL@ALIAS (resolved now) or MODEL/VERSION.")],
    data: DataOpt,
    at: Annotated[
        str | None, typer.Option("--at", help="When the rows happened (ISO 8601), without a timestamp column.")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a batch of production rows; they are profiled into hourly buckets of the version that served them."""
    model, alias, version = _ref(ref)
    with client(url, token) as api, file_argument("--data", data):
        result = api.monitor_ingest(model, data, alias=alias, version=version, at=at)
    emit(
        result,
        as_json,
        lambda r: f"{r['rows']} rows of {r['model']} v{r['version']} in {len(r['buckets'])} hourly bucket(s)",
    )


@app.command("labels")
def send_labels(
    model: Annotated[str, typer.Argument(help="Model name.")],
    data: Annotated[
        Path,
        typer.Option(
            "--data", help="Ids and labels: Parquet, CSV or JSON lines (by suffix).", exists=True, dir_okay=False
        ),
    ],
    id_column: Annotated[
        str | None, typer.Option("--id", help="The id column (default: the one the baselines name).")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="The label column (default: the one the baselines name).")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send labels that arrived after the predictions; they join the production rows sent earlier by id, and
    checks then re-test the gate policy of the alias on them."""
    with client(url, token) as api, file_argument("--data", data):
        result = api.monitor_labels(model, data, id=id_column, target=target)
    emit(
        result,
        as_json,
        lambda r: (
            f"{r['rows']} labels for {r['model']} ("
            + ", ".join(f"v{v['version']}: {v['labels']}" for v in r["versions"])
            + ")"
        ),
    )


@app.command("set")
def set_spec(
    model: Annotated[str, typer.Argument(help="Model name.")],
    spec: Annotated[Path, typer.Option("--spec", help="Monitor spec (YAML).", exists=True, dir_okay=False)],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the model's monitor spec: window, minimum rows, schedule, methods and thresholds (maintainers)."""
    with file_argument("--spec", spec):
        text = spec.read_text(encoding="utf-8")
    with client(url, token) as api:
        found = api.set_monitor_spec(model, text)
    emit(found, as_json, lambda d: f"monitor spec of {d['model']} set ({d['digest'][:12]})")


@app.command("show")
def show_spec(
    model: Annotated[str, typer.Argument(help="Model name.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the model's monitor spec."""
    with client(url, token) as api:
        found = api.monitor_spec(model)
    _plain(found, as_json, lambda d: d["spec"].rstrip("\n"))


def check_table(c: dict[str, Any]) -> Table:
    target = f"{c['model']}@{c['alias']}" if c.get("alias") else c["model"]
    verdict = VERDICTS[c["status"]]
    window = c["window"]
    title = (
        f"Drift check #{c['id']} of {target} v{c['version']}: {verdict} "
        f"({c['rows']} rows, {when(window['start'])} to {when(window['end'])}, reference {c['reference_rows']})"
    )
    rows = (
        (
            col["column"],
            col["type"],
            col["method"],
            f"{col['statistic']:.4g}",
            f"{col['threshold']:.4g}",
            "yes" if col["drifted"] else "no",
        )
        for col in c["columns"]
    )
    return make_table(title, ["column", "type", "method", "statistic", "threshold", "drifted"], rows, keep=[0])


PERFORMANCE = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}


def performance_text(c: dict[str, Any], *, short: bool = False) -> str:
    """The gate policy re-tested on the window's labelled rows ("-" without labels): one line, or one cell."""
    p = c.get("performance")
    if not p:
        return "-"
    if p.get("verdict") is None:
        return p["status"].replace("_", " ") if short else f"not evaluated: {p.get('message')}"
    if short:
        return f"{PERFORMANCE[p['verdict']]} ({p['labelled']} labelled)"
    gates = ", ".join(f"{g['gate_id']} {g['status']}" for g in (p.get("report") or {}).get("gates", []))
    return f"{PERFORMANCE[p['verdict']]} on {p['labelled']} labelled rows (@{p['policy_alias']} policy: {gates})"


@app.command("check")
def check(
    ref: Annotated[str, typer.Argument(help="MODEL@ALIAS (the version it points at now) or MODEL/VERSION.")],
    window: Annotated[
        str | None, typer.Option("--window", help="1h, 6h, 1d, 7d or 'since last check' (default: the spec's).")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="Window end (ISO 8601); default now.")] = None,
    report_json: Annotated[
        Path | None, typer.Option("--report-json", help="Write the check as JSON.", callback=writable_file)
    ] = None,
    report_html: Annotated[
        Path | None,
        typer.Option("--report-html", help="Download the check's Evidently HTML report.", callback=writable_file),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one drift check now. Exit codes: 0 no drift, 1 drift, 3 not enough rows, 2 bad input, 4 unknown
    model, version, alias or baseline."""
    model, alias, version = _ref(ref)
    with client(url, token) as api:
        result = api.monitor_check(model, alias=alias, version=version, window=window, end=end)
        if report_json:
            with file_argument("--report-json", report_json):
                report_json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if report_html and result.get("report_url"):
            with file_argument("--report-html", report_html):
                api.monitor_report_html(model, result["id"], report_html)
    emit(result, as_json, check_table)
    if not as_json:
        if result.get("performance"):
            out.print(f"performance: {performance_text(result)}", highlight=False)
        alerts = [a for a in (result.get("alert"), (result.get("performance") or {}).get("alert")) if a]
        if alerts:
            out.print(f"alert: {', '.join(alerts)}", highlight=False)
    if report_html and not result.get("report_url"):
        err.print("no HTML report: the window had no production rows", highlight=False)
    raise typer.Exit(EXIT_BY_STATUS.get(result["status"], 1))


@app.command("status")
def status(
    model: Annotated[str, typer.Argument(help="Model name.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The latest drift check of each alias."""
    with client(url, token) as api:
        found = api.monitor_status(model)
    emit(
        found,
        as_json,
        lambda rows: make_table(
            f"Monitoring of {model}",
            ["alias", "version", "status", "window", "rows", "drifted", "performance", "check", "at"],
            (
                (
                    c["alias"],
                    c["version"],
                    VERDICTS[c["status"]],
                    f"{when(c['window']['start'])} to {when(c['window']['end'])}",
                    c["rows"],
                    ", ".join(c["drifted"]) or "-",
                    performance_text(c, short=True),
                    f"#{c['id']}",
                    when(c["created_at"]),
                )
                for c in rows
            ),
            keep=[0, 2],
        ),
    )
