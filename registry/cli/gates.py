"""`registry gate run|policy`: statistical promotion gates, offline or against the registry."""

from __future__ import annotations

import json
from dataclasses import dataclass
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


def write_reports(report: dict[str, Any], *, report_md: Path | None, report_json: Path | None) -> None:
    if report_json:
        with file_argument("--report-json", report_json):
            report_json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if report_md:
        with file_argument("--report-md", report_md):
            report_md.write_text(_markdown(report) + "\n", encoding="utf-8")


def show(report: dict[str, Any], *, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    """The report on stdout (rich table or JSON), warnings on stderr."""
    if as_json:
        emit(report | (extra or {}), True)
        return
    out.print(report_table(report))
    for warning in report.get("warnings", []):
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    reveals = report.get("reveals", {})
    if reveals.get("budget"):
        out.print(f"test-set reveals: {reveals['used']} of {reveals['budget']}", highlight=False)
    if extra and extra.get("id"):
        out.print(f"recorded as gate run #{extra['id']}", highlight=False)


def _finish(
    report: dict[str, Any],
    *,
    as_json: bool,
    report_md: Path | None,
    report_json: Path | None,
    extra: dict[str, Any] | None = None,
) -> None:
    write_reports(report, report_md=report_md, report_json=report_json)
    show(report, as_json=as_json, extra=extra)
    raise typer.Exit(EXIT_BY_VERDICT.get(report["verdict"], 1))


@dataclass(frozen=True)
class Evaluated:
    """A gate evaluation, offline or on the registry, and what it was evaluated against."""

    report: dict[str, Any]
    extra: dict[str, Any]
    """The registry's fields beside the report (``id`` when recorded, ``model``, ``version`` ...); {} offline."""
    spec_text: str
    spec_path: Path | None
    """The local spec file; None with ``--policy``."""


SpecOpt = Annotated[
    Path | None,
    typer.Option(
        "--spec", help="Gate spec (YAML). Default: gates.yaml (or gates.yml) here.", exists=True, dir_okay=False
    ),
]
PolicyOpt = Annotated[
    str | None,
    typer.Option("--policy", help="Registry: evaluate against the gate policy of MODEL@ALIAS instead of a spec."),
]
CandidateOpt = Annotated[
    Path | None,
    typer.Option(
        "--candidate",
        help="Offline: the candidate's per-example results (Parquet or CSV).",
        exists=True,
        dir_okay=False,
    ),
]
BaselineOpt = Annotated[
    Path | None,
    typer.Option("--baseline", help="Offline: the baseline's results (paired gates).", exists=True, dir_okay=False),
]
RecordOpt = Annotated[bool, typer.Option("--record", help="Store the run on the version (counts for policies).")]
EvalPathOpt = Annotated[
    str | None,
    typer.Option("--eval-path", help="The version's evaluation file, if not the single table under eval/."),
]
ReportMdOpt = Annotated[
    Path | None, typer.Option("--report-md", help="Write a GitHub Markdown report.", callback=writable_file)
]
ReportJsonOpt = Annotated[
    Path | None, typer.Option("--report-json", help="Write the JSON report.", callback=writable_file)
]
ModelArg = Annotated[str | None, typer.Argument(help="Model (evaluate a registered version).")]
VersionArg = Annotated[int | None, typer.Argument(help="Version number.", min=1)]


def evaluate(
    *,
    model: str | None,
    version: int | None,
    spec: Path | None,
    policy: str | None,
    candidate: Path | None,
    baseline: Path | None,
    record: bool,
    commit: str | None,
    eval_path: str | None,
    url: str | None,
    token: str | None,
) -> Evaluated:
    """Evaluate offline (``candidate``) or a registered version; bad arguments, specs or data end the command
    with a message and exit 2."""
    if policy is not None and spec is not None:
        fail("use either --spec FILE or --policy ALIAS, not both", EXIT_USAGE)
    if candidate is not None:
        if model or version or record or policy is not None:
            fail("use either --candidate (offline) or MODEL VERSION (registry), not both", EXIT_USAGE)
        import gates

        spec = spec or _default_spec()
        text = _read_spec(spec)
        candidate_table = _load_table("--candidate", candidate)
        baseline_table = _load_table("--baseline", baseline) if baseline else None
        try:
            report = gates.evaluate(gates.load_spec(text), candidate_table, baseline_table).to_dict()
        except gates.GateError as exc:
            fail(str(exc), EXIT_USAGE)
        return Evaluated(report=report, extra={}, spec_text=text, spec_path=spec)
    if not model or not version:
        fail("give MODEL VERSION to evaluate a registered version, or --candidate FILE to run offline", EXIT_USAGE)
    alias = alias_option(policy, "--policy") if policy is not None else None
    spec_path = None if alias is not None else (spec or _default_spec())
    with client(url, token) as api:
        text = _read_spec(spec_path) if spec_path is not None else _policy_spec(api, model, str(alias))
        body = {"spec": text, "record": record, "commit_sha": commit, "eval_path": eval_path}
        result = api.json("POST", f"/api/v1/models/{api_quote(model)}/versions/{version}/gate-runs", json=body)
    extra = {k: v for k, v in result.items() if k != "report"}
    return Evaluated(report=result["report"], extra=extra, spec_text=text, spec_path=spec_path)


def _policy_spec(api: Any, model: str, alias: str) -> str:
    for policy in api.json("GET", f"/api/v1/models/{api_quote(model)}/gate-policies"):
        if policy["alias"] == alias:
            return str(policy["spec"])
    fail(f"{model}@{alias} has no gate policy (see `registry gate policy list {model}`)", EXIT_USAGE)


@app.command("run")
def run(
    model: ModelArg = None,
    version: VersionArg = None,
    spec: SpecOpt = None,
    policy: PolicyOpt = None,
    candidate: CandidateOpt = None,
    baseline: BaselineOpt = None,
    record: RecordOpt = False,
    commit: Annotated[str | None, typer.Option("--commit", help="Commit SHA to record with the run.")] = None,
    eval_path: EvalPathOpt = None,
    report_md: ReportMdOpt = None,
    report_json: ReportJsonOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate gates. Exit codes: 0 pass, 1 fail, 3 inconclusive (on_inconclusive: warn), 2 bad spec/data.

    Offline: --candidate FILE (and --baseline FILE for paired gates). Registered: MODEL VERSION, with --spec
    FILE or --policy ALIAS (the gate policy guarding that alias).

    Without --spec or --policy, gates.yaml (then gates.yml) in the current folder is used."""
    done = evaluate(
        model=model,
        version=version,
        spec=spec,
        policy=policy,
        candidate=candidate,
        baseline=baseline,
        record=record,
        commit=commit,
        eval_path=eval_path,
        url=url,
        token=token,
    )
    _finish(done.report, as_json=as_json, report_md=report_md, report_json=report_json, extra=done.extra)


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
