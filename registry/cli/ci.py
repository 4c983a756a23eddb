"""`registry ci gate`: `registry gate run`, reporting to the CI it runs in.

Under GitHub Actions (``GITHUB_ACTIONS=true``) the result also goes where the pull request shows it: a commit
status (or a check run) on the PR's head commit, one sticky PR comment, the job summary, and step outputs.
Whatever GitHub answers, the gate's result and exit code stay those of ``gate run``: a refusal (a fork's
read-only token, a rate limit that outlasts the wait, GitHub unreachable) is a ``::warning::``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from automations import github_report as render
from automations.github import GitHubClient, GitHubError, GitHubRefused
from registry.cli import gates as gate_cli
from registry.cli._common import EXIT_FAILED, JsonOpt, TokenOpt, UrlOpt
from registry.cli.gates import (
    BaselineOpt,
    CandidateOpt,
    EvalPathOpt,
    ModelArg,
    PolicyOpt,
    RecordOpt,
    ReportJsonOpt,
    ReportMdOpt,
    SpecOpt,
    VersionArg,
)

app = typer.Typer(help="Gates in CI: report results where the pull request shows them.", no_args_is_help=True)
SUMMARY_MAX = 1_000_000
"""GitHub rejects a step summary over 1 MiB; ours stays below."""


class ReportKind(StrEnum):
    status = "status"
    check = "check"
    none = "none"


@dataclass(frozen=True)
class Actions:
    """What GitHub Actions tells a step about where it runs (``GITHUB_*``)."""

    repository: str | None
    api_url: str
    sha: str | None
    """The PR's head commit (``pull_request.head.sha``), never the merge commit in ``GITHUB_SHA``; on other
    events, ``GITHUB_SHA``."""
    pr_number: int | None
    fork: bool
    run_url: str | None
    summary: Path | None
    output: Path | None
    workspace: Path | None
    temp: Path


def actions_context(env: dict[str, str], warn: Callable[[str], None]) -> Actions | None:
    """The GitHub Actions context, or None outside it. A broken event file is a warning: it is the runner's."""
    if env.get("GITHUB_ACTIONS") != "true":
        return None
    repository = env.get("GITHUB_REPOSITORY") or None
    event: dict[str, Any] = {}
    if env.get("GITHUB_EVENT_PATH"):
        try:
            loaded = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text(encoding="utf-8"))
            event = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError) as exc:
            warn(f"cannot read the event file GITHUB_EVENT_PATH ({exc.__class__.__name__}): no pull request known")
    pull = event.get("pull_request") if isinstance(event.get("pull_request"), dict) else None
    sha, number, fork = env.get("GITHUB_SHA") or None, None, False
    if pull is not None:
        head = pull.get("head") or {}
        sha = str(head.get("sha") or "") or sha
        number = int(pull["number"]) if isinstance(pull.get("number"), int) else None
        base_repo = (pull.get("base") or {}).get("repo") or {}
        head_repo = head.get("repo") or {}
        fork = bool(head_repo) and head_repo.get("full_name") != base_repo.get("full_name")
    server, run_id = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/"), env.get("GITHUB_RUN_ID")
    return Actions(
        repository=repository,
        api_url=env.get("GITHUB_API_URL") or "https://api.github.com",
        sha=sha,
        pr_number=number,
        fork=fork,
        run_url=f"{server}/{repository}/actions/runs/{run_id}" if repository and run_id else None,
        summary=Path(env["GITHUB_STEP_SUMMARY"]) if env.get("GITHUB_STEP_SUMMARY") else None,
        output=Path(env["GITHUB_OUTPUT"]) if env.get("GITHUB_OUTPUT") else None,
        workspace=Path(env["GITHUB_WORKSPACE"]) if env.get("GITHUB_WORKSPACE") else None,
        temp=Path(env.get("RUNNER_TEMP") or tempfile.gettempdir()),
    )


class Warnings:
    """``::warning::`` workflow commands, with every secret replaced by ``***`` (GitHub's own messages are
    quoted in them, and a message must never echo a token back)."""

    def __init__(self, secrets: list[str | None], *, to_stderr: bool) -> None:
        self.secrets = [s for s in secrets if s]
        self.to_stderr = to_stderr

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def __call__(self, message: str) -> None:
        # Workflow command data escaping: % first, then line breaks (one command per line).
        data = self.redact(message).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        typer.echo(f"::warning title=Modelkeep gate::{data}", err=self.to_stderr)


@app.command("gate")
def gate(
    model: ModelArg = None,
    version: VersionArg = None,
    spec: SpecOpt = None,
    policy: PolicyOpt = None,
    candidate: CandidateOpt = None,
    baseline: BaselineOpt = None,
    record: RecordOpt = False,
    commit: Annotated[
        str | None,
        typer.Option("--commit", help="Commit SHA to record with the run. Under GitHub: the PR's head commit."),
    ] = None,
    eval_path: EvalPathOpt = None,
    report_md: ReportMdOpt = None,
    report_json: ReportJsonOpt = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Gate name: status context modelkeep/gate/NAME and its own PR comment."),
    ] = None,
    github_report: Annotated[
        ReportKind,
        typer.Option("--github-report", help="status: a commit status; check: a check run with annotations."),
    ] = ReportKind.status,
    comment: Annotated[
        bool, typer.Option("--comment/--no-comment", help="Keep one PR comment with the report up to date.")
    ] = True,
    fail_on_inconclusive: Annotated[
        bool, typer.Option("--fail-on-inconclusive", help="INCONCLUSIVE fails (status failure, exit 1).")
    ] = False,
    github_token_env: Annotated[
        str, typer.Option("--github-token-env", help="Environment variable holding the GitHub token.")
    ] = "GITHUB_TOKEN",
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """`registry gate run` (same arguments and exit codes: 0 pass, 1 fail, 3 inconclusive, 2 bad input) that
    also reports to GitHub Actions: a commit status (or check run) on the PR's head commit, one PR comment
    edited on every rerun, the job summary, and the outputs verdict, gate-run-id and report.

    Outside GitHub Actions it prints the report and exits the same way."""
    if name is not None and not render.NAME.match(name):
        raise typer.BadParameter("use 1-64 letters, digits, '_', '-' or '.'", param_hint="--name")
    env = dict(os.environ)
    github_token = env.get(github_token_env) or None
    warn = Warnings([token or env.get("MODELKEEP_TOKEN"), github_token], to_stderr=as_json)
    ctx = actions_context(env, warn)
    if ctx is not None and record and commit is None:
        commit = ctx.sha
    done = gate_cli.evaluate(
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
    report = done.report
    gate_cli.write_reports(report, report_md=report_md, report_json=report_json)
    gate_cli.show(report, as_json=as_json, extra=done.extra)
    code = gate_cli.EXIT_BY_VERDICT.get(report["verdict"], EXIT_FAILED)
    if fail_on_inconclusive and report["verdict"] == "inconclusive":
        code = EXIT_FAILED
    if ctx is not None:
        where = _Where(model=model, version=version, candidate=candidate, baseline=baseline, url=url)
        options = _Options(name, github_report, comment, fail_on_inconclusive, github_token_env, report_json)
        _report(ctx, done, where, options, warn, github_token)
    raise typer.Exit(code)


@dataclass(frozen=True)
class _Options:
    name: str | None
    kind: ReportKind
    comment: bool
    fail_on_inconclusive: bool
    token_env: str
    report_json: Path | None


@dataclass(frozen=True)
class _Where:
    model: str | None
    version: int | None
    candidate: Path | None
    baseline: Path | None
    url: str | None


def _context(done: gate_cli.Evaluated, where: _Where, ctx: Actions, name: str | None) -> render.Context:
    extra = done.extra
    if where.candidate is not None:
        candidate = f"`{where.candidate.name}`"
        baseline = f"`{where.baseline.name}`" if where.baseline else None
    else:
        candidate = f"`{where.model}` v{where.version}"
        alias = _baseline_alias(done.spec_text)
        held = extra.get("baseline_version")
        baseline = f"`{where.model}@{alias}`" + (f" (v{held})" if held else "") if alias else None
    run_id = extra.get("id")
    gate_run_url = f"{where.url.rstrip('/')}/api/v1/gate-runs/{run_id}" if run_id and where.url else None
    return render.Context(
        name=name,
        candidate=candidate,
        baseline=baseline,
        gate_run_id=run_id,
        gate_run_url=gate_run_url,
        run_url=ctx.run_url,
        commit=ctx.sha,
    )


def _baseline_alias(spec_text: str) -> str | None:
    import gates
    from gates.spec import PairedGate

    try:
        spec = gates.load_spec(spec_text)
    except gates.GateError:
        return None
    wanted = sorted({g.baseline for g in spec.gates if isinstance(g, PairedGate)})
    return wanted[0].removeprefix("@") if wanted else None


def _report(
    ctx: Actions, done: gate_cli.Evaluated, where: _Where, options: _Options, warn: Warnings, github_token: str | None
) -> None:
    """Summary and outputs first (they cannot be refused), then GitHub's API; every failure a warning."""
    report = done.report
    name, report_json = options.name, options.report_json
    about = _context(done, where, ctx, name)
    body = render.markdown(report, about)
    if ctx.summary is not None:
        _append(ctx.summary, body.encode()[:SUMMARY_MAX].decode(errors="ignore") + "\n", warn, "GITHUB_STEP_SUMMARY")
    json_path: Path | None = report_json or ctx.temp / f"modelkeep-gate-{name or 'default'}.json"
    if report_json is None and json_path is not None:
        try:
            json_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        except OSError as exc:  # the runner's temp folder: its problem, not the gate's
            warn(f"cannot write the JSON report to {json_path}: {exc.strerror or exc}")
            json_path = None
    outputs = {"verdict": render.verdict_word(report["verdict"])}
    if json_path is not None:
        outputs["report"] = str(json_path.resolve())
    if done.extra.get("id"):
        outputs["gate-run-id"] = str(done.extra["id"])
    if ctx.output is not None:
        _append(ctx.output, "".join(_output_line(k, v) for k, v in outputs.items()), warn, "GITHUB_OUTPUT")
    if options.kind is ReportKind.none and not options.comment:
        return
    if github_token is None:
        warn(f"no GitHub token in ${options.token_env}: no status, check run or comment (the summary has the report)")
        return
    if ctx.repository is None or ctx.sha is None:
        warn("GITHUB_REPOSITORY or the commit is unknown: no status, check run or comment")
        return
    _post(ctx, done, about, body, options, warn, github_token)


def _post(
    ctx: Actions,
    done: gate_cli.Evaluated,
    about: render.Context,
    body: str,
    options: _Options,
    warn: Warnings,
    github_token: str,
) -> None:
    assert ctx.repository is not None and ctx.sha is not None
    report, name, kind = done.report, options.name, options.kind
    fail_on_inconclusive = options.fail_on_inconclusive

    def refused(what: str, exc: GitHubError) -> None:
        hint = ""
        if isinstance(exc, GitHubRefused) and exc.status_code == 403 and ctx.fork:
            hint = " A pull request from a fork gets a read-only token; the job summary has the report."
        elif isinstance(exc, GitHubRefused) and exc.status_code == 403:
            hint = " Does the workflow grant `permissions:` statuses/checks/pull-requests: write?"
        warn(f"GitHub refused {what}: {exc.message}.{hint} The gate's result is unchanged.")

    context = render.context(name)
    with GitHubClient(ctx.api_url, github_token) as github:
        try:
            if kind is ReportKind.status:
                github.set_status(
                    ctx.repository,
                    ctx.sha,
                    state=render.status_state(report["verdict"], fail_on_inconclusive=fail_on_inconclusive),
                    description=render.description(report),
                    context=context,
                    target_url=ctx.run_url,
                )
            elif kind is ReportKind.check:
                github.create_check_run(
                    ctx.repository,
                    ctx.sha,
                    name=context,
                    conclusion=render.check_conclusion(report["verdict"], fail_on_inconclusive=fail_on_inconclusive),
                    title=render.description(report),
                    summary=body,
                    details_url=ctx.run_url,
                    annotations=render.annotations_for(
                        report, spec_path=_in_workspace(done.spec_path, ctx), spec_text=done.spec_text
                    ),
                )
        except GitHubError as exc:
            refused("the commit status" if kind is ReportKind.status else "the check run", exc)
        if not options.comment:
            return
        if ctx.pr_number is None:
            return  # not a pull request (a push, a schedule): nothing to comment on
        try:
            github.upsert_comment(
                ctx.repository,
                ctx.pr_number,
                marker=render.marker(name or "default"),
                body=render.comment(report, about, key=name or "default"),
            )
        except GitHubError as exc:
            refused("the pull request comment", exc)


def _in_workspace(path: Path | None, ctx: Actions) -> str | None:
    """The spec's path relative to the repository checkout (annotations name files that way), if it is in it."""
    if path is None:
        return None
    root = ctx.workspace or Path.cwd()
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def _output_line(key: str, value: str) -> str:
    if "\n" not in value:
        return f"{key}={value}\n"
    delimiter = f"MODELKEEP_{os.urandom(8).hex()}"
    return f"{key}<<{delimiter}\n{value}\n{delimiter}\n"


def _append(path: Path, text: str, warn: Warnings, what: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as sink:
            sink.write(text)
    except OSError as exc:
        warn(f"cannot write {what} ({path}): {exc.strerror or exc}")
