"""`registry gate run|policy`: statistical promotion gates, offline or against the registry."""

from __future__ import annotations

import json
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
    cell,
    client,
    emit,
    err,
    fail,
    file_argument,
    make_table,
    out,
    writable_file,
)

app = typer.Typer(
    help="Statistical promotion gates (pass / fail / inconclusive with a stated error rate).", no_args_is_help=True
)
policy_app = typer.Typer(
    help="Gate policies: what a version must pass before an alias may point at it.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
EXIT_BY_VERDICT = {"pass": 0, "warn": 0, "fail": 1, "inconclusive": 3}
DEFAULT_SPECS = ("gates.yaml", "gates.yml")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def report_table(report: dict[str, Any]) -> Table:
    table = make_table(
        f"Gates: {report['verdict'].upper()}",
        ["gate", "status", "estimate", "interval", "requirement", "p (violated)", "n", "failures", "n needed"],
        [],
        keep=[0],  # the gate and its slice name the row
    )
    colour = {"PASS": "green", "FAIL": "red", "INCONCLUSIVE": "yellow"}
    for r in report["results"]:
        label = r.get("label") or _label(r["gate_id"], r.get("slice"))
        interval = r["interval"]
        requirement = f"{r['direction'] or ''} {_fmt(r['threshold'])}".strip() if r["threshold"] is not None else "-"
        table.add_row(
            cell(label),
            f"[{colour[r['status']]}]{r['status']}[/]",
            _fmt(r["estimate"]),
            f"[{_fmt(interval['lower'])}, {_fmt(interval['upper'])}] {interval['method']}",
            requirement,
            _fmt(r["p_value"]),
            _fmt(r["n"]),
            _fmt(r["failures"]),
            _fmt(r["n_needed"]),
        )
    return table


def _label(gate_id: str, slice_values: dict[str, Any] | None) -> str:
    """``per-country[country=DE]``, as the Markdown report writes it."""
    if not slice_values:
        return gate_id
    return f"{gate_id}[{', '.join(f'{k}={v}' for k, v in slice_values.items())}]"


def _markdown(report: dict[str, Any]) -> str:
    from gates.report import report_from_dict, to_markdown

    return to_markdown(report_from_dict(report))


def _finish(
    report: dict[str, Any],
    *,
    as_json: bool,
    report_md: Path | None,
    report_json: Path | None,
    extra: dict[str, Any] | None = None,
) -> None:
    if report_json:
        with file_argument("--report-json", report_json):
            report_json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if report_md:
        with file_argument("--report-md", report_md):
            report_md.write_text(_markdown(report) + "\n", encoding="utf-8")
    if as_json:
        emit(report | (extra or {}), True)
    else:
        out.print(report_table(report))
        for warning in report.get("warnings", []):
            err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
        reveals = report.get("reveals", {})
        if reveals.get("budget"):
            out.print(f"test-set reveals: {reveals['used']} of {reveals['budget']}", highlight=False)
        if extra and extra.get("id"):
            out.print(f"recorded as gate run #{extra['id']}", highlight=False)
    raise typer.Exit(EXIT_BY_VERDICT.get(report["verdict"], 1))


@app.command("run")
def run(
    model: Annotated[str | None, typer.Argument(help="Model (evaluate a registered version).")] = None,
    version: Annotated[int | None, typer.Argument(help="Version number.", min=1)] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec", help="Gate spec (YAML). Default: gates.yaml (or gates.yml) here.", exists=True, dir_okay=False
        ),
    ] = None,
    candidate: Annotated[
        Path | None,
        typer.Option(
            "--candidate",
            help="Offline: the candidate's per-example results (Parquet or CSV).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="Offline: the baseline's results (paired gates).", exists=True, dir_okay=False),
    ] = None,
    record: Annotated[
        bool, typer.Option("--record", help="Store the run on the version (counts for policies).")
    ] = False,
    commit: Annotated[str | None, typer.Option("--commit", help="Commit SHA to record with the run.")] = None,
    eval_path: Annotated[
        str | None,
        typer.Option("--eval-path", help="The version's evaluation file, if not the single table under eval/."),
    ] = None,
    report_md: Annotated[
        Path | None, typer.Option("--report-md", help="Write a GitHub Markdown report.", callback=writable_file)
    ] = None,
    report_json: Annotated[
        Path | None, typer.Option("--report-json", help="Write the JSON report.", callback=writable_file)
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate gates. Exit codes: 0 pass, 1 fail, 3 inconclusive (on_inconclusive: warn), 2 bad spec/data.

    Offline: --candidate FILE (and --baseline FILE for paired gates). Registered: MODEL VERSION.

    Without --spec, gates.yaml (then gates.yml) in the current folder is used."""
    spec = spec or _default_spec()
    text = _read_spec(spec)
    if candidate is not None:
        if model or version or record:
            fail("use either --candidate (offline) or MODEL VERSION (registry), not both", EXIT_USAGE)
        import gates

        candidate_table = _load_table("--candidate", candidate)
        baseline_table = _load_table("--baseline", baseline) if baseline else None
        try:
            report = gates.evaluate(gates.load_spec(text), candidate_table, baseline_table).to_dict()
        except gates.GateError as exc:
            fail(str(exc), EXIT_USAGE)
        _finish(report, as_json=as_json, report_md=report_md, report_json=report_json)
    if not model or not version:
        fail("give MODEL VERSION to evaluate a registered version, or --candidate FILE to run offline", EXIT_USAGE)
    with client(url, token) as api:
        body = {"spec": text, "record": record, "commit_sha": commit, "eval_path": eval_path}
        result = api.json("POST", f"/api/v1/models/{api_quote(model)}/versions/{version}/gate-runs", json=body)
    _finish(
        result["report"],
        as_json=as_json,
        report_md=report_md,
        report_json=report_json,
        extra={k: v for k, v in result.items() if k != "report"},
    )


def _default_spec() -> Path:
    for name in DEFAULT_SPECS:
        if Path(name).is_file():
            return Path(name)
    fail("no --spec given and no gates.yaml here: pass --spec FILE", EXIT_USAGE)


def _read_spec(spec: Path) -> str:
    with file_argument("--spec", spec):
        return spec.read_text(encoding="utf-8")


def _load_table(option: str, path: Path) -> Any:
    import gates

    with file_argument(option, path):
        try:
            table = gates.load_table(path)
            # Column names are decoded lazily: a non-UTF-8 header fails here, against its file, not mid-evaluation.
            table.column_names  # noqa: B018
        except gates.GateError as exc:
            fail(f"{option} {path}: {exc}", EXIT_USAGE)
    return table


def api_quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


@policy_app.command("set")
def policy_set(
    model: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Option("--alias", help="Alias the policy guards.")],
    spec: Annotated[Path, typer.Option("--spec", exists=True, dir_okay=False, help="Gate spec (YAML).")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Require a recorded pass of SPEC before ALIAS may move to a version (maintainers)."""
    alias = alias_option(alias, "--alias")
    with client(url, token) as api:
        data = api.json(
            "PUT",
            f"/api/v1/models/{api_quote(model)}/gate-policies/{api_quote(alias)}",
            json={"spec": _read_spec(spec)},
        )
    emit(data, as_json, lambda d: f"{d['model']}@{d['alias']} now requires spec {d['spec_digest'][:12]}")


@policy_app.command("list")
def policy_list(
    model: Annotated[str, typer.Argument(help="Model name.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a model's gate policies."""
    with client(url, token) as api:
        data = api.json("GET", f"/api/v1/models/{api_quote(model)}/gate-policies")
    emit(
        data,
        as_json,
        lambda rows: make_table(
            f"Gate policies of {model}",
            ["alias", "spec digest", "set by", "at"],
            ((p["alias"], p["spec_digest"][:12], p["created_by"], p["updated_at"]) for p in rows),
        ),
    )


@policy_app.command("remove")
def policy_remove(
    model: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Option("--alias")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove the gate policy of ALIAS."""
    alias = alias_option(alias, "--alias")
    with client(url, token) as api:
        data = api.json("DELETE", f"/api/v1/models/{api_quote(model)}/gate-policies/{api_quote(alias)}")
    emit(data, as_json, lambda d: f"removed the gate policy of {model}@{alias}")
