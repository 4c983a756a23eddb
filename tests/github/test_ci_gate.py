"""`registry ci gate` offline (--candidate), run in-process as a GitHub Actions step runs it: GITHUB_* variables,
a pull_request event file, and the fake GitHub as the API. (With the registry: test_ci_registry.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.github.conftest import (
    HEAD,
    MERGE,
    PR,
    READ,
    REPO,
    WARN_SPEC,
    Result,
    Runner,
    Tables,
    closed_port_url,
    pull_request_event,
)
from tests.github.fake_github import FakeGitHub

MARKER = "<!-- modelkeep-gate:default -->"
RUN_URL = "https://github.example/acme/models/actions/runs/4242"


def gate(cli: Any, env: dict[str, str], runner: Runner, candidate: Path, *extra: str) -> Result:
    result: Result = cli(
        env, "ci", "gate", "--spec", str(runner.folder / "gates.yaml"), "--candidate", str(candidate), *extra
    )
    return result


def warnings(result: Result) -> list[str]:
    return [line for line in (result.out + result.err).splitlines() if line.startswith("::warning")]


def test_status_on_the_head_commit_one_comment_summary_and_outputs(
    cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables
) -> None:
    env = runner.env()
    first = gate(cli, env, runner, tables.bad)
    assert first.code == 1, first.err
    assert warnings(first) == []
    [status] = fake.state.statuses
    assert status["sha"] == HEAD, "the PR's head commit, not GITHUB_SHA's merge commit"
    assert status["state"] == "failure" and status["context"] == "modelkeep/gate"
    assert status["description"] == "FAIL: accuracy 0.9 < 0.95 (lower bound)"
    assert status["target_url"] == RUN_URL
    [comment] = fake.comments_on(REPO, PR)
    assert comment["body"].startswith(MARKER + "\n")
    expected = [
        "❌ Modelkeep gate: FAIL",
        "| Gate | Status | Estimate | Interval | Requirement |",
        "`accuracy`",
        "n needed",
        "**Candidate:** `bad.parquet`",
        f"[workflow run]({RUN_URL})",
        f"commit `{HEAD[:12]}`",
    ]
    for text in expected:
        assert text in comment["body"], text
    summary = runner.summary.read_text()
    assert "Modelkeep gate: FAIL" in summary and MARKER not in summary
    outputs = runner.outputs()
    assert outputs["verdict"] == "fail" and "gate-run-id" not in outputs
    assert json.loads(Path(outputs["report"]).read_text())["verdict"] == "fail"

    again = gate(cli, env, runner, tables.good)
    assert again.code == 0, again.err
    [comment] = fake.comments_on(REPO, PR)
    assert "✅ Modelkeep gate: PASS" in comment["body"] and "FAIL" not in comment["body"]
    assert len(fake.requests("POST", r"/comments$")) == 1 and len(fake.requests("PATCH")) == 1
    assert [s["state"] for s in fake.state.statuses] == ["failure", "success"]
    assert all(s["sha"] == HEAD for s in fake.state.statuses) and not any(
        s["sha"] == MERGE for s in fake.state.statuses
    )
    assert runner.summary.read_text().count("### ") == 2, "each run appends its report to the summary"
    assert runner.output.read_text().count("verdict=") == 2 and runner.outputs()["verdict"] == "pass"


def test_fork_pull_request_read_only_token_is_a_warning(
    cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables
) -> None:
    env = runner.env(pull_request_event(head_repo="outsider/models"), token=READ)
    result = gate(cli, env, runner, tables.bad)
    assert result.code == 1, "the gate's exit code, whatever GitHub said"
    found = warnings(result)
    assert len(found) == 2 and all("403" in w and "fork" in w for w in found), found
    assert fake.state.statuses == [] and fake.comments_on(REPO, PR) == []
    assert "Modelkeep gate: FAIL" in runner.summary.read_text() and runner.outputs()["verdict"] == "fail"


def test_rate_limit_is_retried(cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables) -> None:
    fake.rate_limit(1, status=429, retry_after="1")
    result = gate(cli, runner.env(), runner, tables.good)
    assert result.code == 0 and warnings(result) == []
    assert [s.status for s in fake.requests(pattern=r"^/repos/acme/models$")] == [429, 200]
    assert [s["state"] for s in fake.state.statuses] == ["success"] and len(fake.comments_on(REPO, PR)) == 1


def test_rate_limit_beyond_the_wait_budget_is_a_warning(
    cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables
) -> None:
    fake.rate_limit(4, status=403, retry_after="3600")
    result = gate(cli, runner.env(), runner, tables.bad)
    assert result.code == 1
    assert any("secondary rate limit" in w for w in warnings(result))
    assert "Modelkeep gate: FAIL" in runner.summary.read_text()


def test_github_unreachable_changes_nothing_but_warns(cli: Any, runner: Runner, tables: Tables) -> None:
    result = gate(cli, runner.env(api_url=closed_port_url()), runner, tables.bad)
    assert result.code == 1
    found = warnings(result)
    assert len(found) == 2 and all("cannot reach GitHub" in w for w in found)
    assert "Modelkeep gate: FAIL" in runner.summary.read_text() and runner.outputs()["verdict"] == "fail"


def test_tokens_never_appear_in_output(cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables) -> None:
    fake.echo_tokens = True  # even a GitHub that quoted the token back would not get it printed
    env = runner.env(token=READ) | {"MODELKEEP_TOKEN": "mk_registry_secret_value"}
    result = gate(cli, env, runner, tables.bad)
    assert result.code == 1 and warnings(result)
    written = [result.out, result.err, runner.summary.read_text(), runner.output.read_text()]
    written.append(Path(runner.outputs()["report"]).read_text())
    for text in written:
        assert READ not in text and "mk_registry_secret_value" not in text
    assert "***" in "".join(warnings(result))


def test_check_run_with_annotations_and_a_named_gate(
    cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables
) -> None:
    result = gate(cli, runner.env(), runner, tables.bad, "--github-report", "check", "--name", "accuracy-v2")
    assert result.code == 1 and warnings(result) == []
    assert fake.state.statuses == []
    [run] = fake.state.check_runs
    assert run["name"] == "modelkeep/gate/accuracy-v2" and run["head_sha"] == HEAD
    assert run["conclusion"] == "failure" and run["details_url"] == RUN_URL
    assert run["output"]["title"] == "FAIL: accuracy 0.9 < 0.95 (lower bound)"
    assert "| Gate | Status |" in run["output"]["summary"]
    [annotation] = run["output"]["annotations"]
    assert annotation["path"] == "gates.yaml" and annotation["start_line"] == 4
    assert annotation["annotation_level"] == "failure"
    [comment] = fake.comments_on(REPO, PR)
    assert comment["body"].startswith("<!-- modelkeep-gate:accuracy-v2 -->") and "`accuracy-v2`" in comment["body"]
    assert Path(runner.outputs()["report"]).name == "modelkeep-gate-accuracy-v2.json"


def test_named_gates_keep_their_own_status_and_comment(
    cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables
) -> None:
    env = runner.env()
    assert gate(cli, env, runner, tables.good, "--name", "quality").code == 0
    assert gate(cli, env, runner, tables.bad, "--name", "fairness").code == 1
    assert gate(cli, env, runner, tables.good, "--name", "quality").code == 0
    contexts = [(s["context"], s["state"]) for s in fake.state.statuses]
    assert contexts == [
        ("modelkeep/gate/quality", "success"),
        ("modelkeep/gate/fairness", "failure"),
        ("modelkeep/gate/quality", "success"),
    ]
    bodies = sorted(c["body"].splitlines()[0] for c in fake.comments_on(REPO, PR))
    assert bodies == ["<!-- modelkeep-gate:fairness -->", "<!-- modelkeep-gate:quality -->"]


def test_inconclusive_follows_on_inconclusive(cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables) -> None:
    env = runner.env()
    warn = runner.folder / "warn.yaml"
    warn.write_text(WARN_SPEC)
    result = cli(env, "ci", "gate", "--spec", str(warn), "--candidate", str(tables.small))
    assert result.code == 3, "on_inconclusive: warn exits 3, as `gate run` does"
    status = fake.state.statuses[-1]
    assert status["state"] == "success" and status["description"].startswith("INCONCLUSIVE: accuracy 0.96 > 0.95")
    assert "n needed" in status["description"] and runner.outputs()["verdict"] == "inconclusive"

    result = cli(env, "ci", "gate", "--spec", str(warn), "--candidate", str(tables.small), "--fail-on-inconclusive")
    assert result.code == 1 and fake.state.statuses[-1]["state"] == "failure"

    result = gate(cli, env, runner, tables.small)  # on_inconclusive: fail
    assert result.code == 1 and fake.state.statuses[-1]["state"] == "failure"
    assert fake.state.statuses[-1]["description"].startswith("FAIL: INCONCLUSIVE accuracy")


def test_push_event_reports_on_the_pushed_commit_without_comment(
    cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables
) -> None:
    env = runner.env({"ref": "refs/heads/main", "after": MERGE, "repository": {"full_name": REPO}})
    result = gate(cli, env, runner, tables.good)
    assert result.code == 0 and warnings(result) == []
    assert [s["sha"] for s in fake.state.statuses] == [MERGE]
    assert fake.comments_on(REPO, PR) == [] and fake.requests(pattern="comments") == []


def test_outside_github_actions_it_only_prints(cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables) -> None:
    env = runner.env()
    del env["GITHUB_ACTIONS"]
    result = gate(cli, env, runner, tables.bad)
    assert result.code == 1 and "Gates: FAIL" in result.out and "accuracy" in result.out
    assert fake.seen == [] and not runner.summary.exists() and not runner.output.exists()


def test_without_a_token_the_summary_still_has_the_report(
    cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables
) -> None:
    result = gate(cli, runner.env(token=None), runner, tables.bad, "--json")
    assert result.code == 1 and json.loads(result.out)["verdict"] == "fail", "--json keeps stdout JSON"
    assert "no GitHub token in $GITHUB_TOKEN" in result.err and fake.seen == []
    assert "Modelkeep gate: FAIL" in runner.summary.read_text()


def test_token_from_another_variable(cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables) -> None:
    env = runner.env(token=None) | {"MY_BOT_TOKEN": "ghs_write"}
    result = gate(cli, env, runner, tables.good, "--github-token-env", "MY_BOT_TOKEN", "--no-comment")
    assert result.code == 0 and warnings(result) == []
    assert len(fake.state.statuses) == 1 and fake.comments_on(REPO, PR) == []


def test_no_report_no_comment_calls_nothing(cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables) -> None:
    result = gate(cli, runner.env(), runner, tables.good, "--github-report", "none", "--no-comment")
    assert result.code == 0 and fake.seen == [] and runner.outputs()["verdict"] == "pass"


def test_github_enterprise(cli: Any, runner: Runner, tables: Tables) -> None:
    with FakeGitHub(prefix="/api/v3") as enterprise:
        enterprise.add_pull(REPO, PR, head_sha=HEAD)
        result = gate(cli, runner.env(api_url=enterprise.api_url), runner, tables.good)
        assert result.code == 0 and warnings(result) == []
        assert len(enterprise.state.statuses) == 1 and len(enterprise.comments_on(REPO, PR)) == 1


def test_unreadable_event_file_is_a_warning(cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables) -> None:
    env = runner.env()
    Path(env["GITHUB_EVENT_PATH"]).write_text("{not json")
    result = gate(cli, env, runner, tables.good)
    assert result.code == 0 and any("event file" in w for w in warnings(result))
    assert [s["sha"] for s in fake.state.statuses] == [MERGE] and fake.comments_on(REPO, PR) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "two words"], "--name"),
        (["--name", "x-->y"], "--name"),
        (["--github-report", "both"], "--github-report"),
        (["--policy", "staging"], "not both"),
        (["--report-json", "/no/such/folder/r.json"], "does not exist"),
    ],
)
def test_bad_input_is_a_message_and_exit_2(
    cli: Any, runner: Runner, fake: FakeGitHub, tables: Tables, args: list[str], message: str
) -> None:
    result = gate(cli, runner.env(), runner, tables.good, *args)
    assert result.code == 2 and message in result.err and "Traceback" not in result.err
    assert fake.seen == [] and not runner.summary.exists()


def test_missing_candidate_file_is_exit_2(cli: Any, runner: Runner, fake: FakeGitHub) -> None:
    result = cli(runner.env(), "ci", "gate", "--candidate", str(runner.folder / "missing.parquet"))
    assert result.code == 2 and "missing.parquet" in result.err and fake.seen == []
