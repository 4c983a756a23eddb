"""`registry ci gate` against the registry (MODEL VERSION with --spec or --policy, --record), on SQLite and
PostgreSQL: the recorded gate run carries the PR's head commit, the step outputs its id, and neither the registry
token nor the GitHub token shows up anywhere the step writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveServer, Tokens, bearer, unique
from tests.github.conftest import HEAD, PR, REPO, SPEC, WRITE, Runner
from tests.github.fake_github import FakeGitHub
from tests.registry.gates.test_gate_flow import eval_table, model_folder


def registered(cli: Any, server: LiveServer, tokens: Tokens, folder: Path) -> str:
    """A model with v1 (accuracy 0.995) and a gate policy on staging."""
    model = unique("ci")
    where = ("--url", server.url)
    pushed = cli(
        {}, "push", model, str(model_folder(folder, eval_table(4000, 20), "v1")), *where, "--token", tokens.writer
    )
    assert pushed.code == 0, pushed.err
    spec = folder / "policy.yaml"
    spec.write_text(SPEC)
    policy = cli(
        {},
        "gate",
        "policy",
        "set",
        model,
        "--alias",
        "staging",
        "--spec",
        str(spec),
        *where,
        "--token",
        tokens.maintainer,
    )
    assert policy.code == 0, policy.err
    return model


def test_recorded_gate_run_against_a_policy(
    cli: Any, runner: Runner, fake: FakeGitHub, live_server: LiveServer, api_tokens: Tokens
) -> None:
    model = registered(cli, live_server, api_tokens, runner.folder)
    env = runner.env() | {"MODELKEEP_URL": live_server.url, "MODELKEEP_TOKEN": api_tokens.writer}
    result = cli(env, "ci", "gate", model, "1", "--policy", "staging", "--record")
    assert result.code == 0, result.err
    outputs = runner.outputs()
    run_id = int(outputs["gate-run-id"])
    assert outputs["verdict"] == "pass" and json.loads(Path(outputs["report"]).read_text())["verdict"] == "pass"
    recorded = httpx.get(f"{live_server.url}/api/v1/gate-runs/{run_id}", headers=bearer(api_tokens.reader)).json()
    assert recorded["commit_sha"] == HEAD and recorded["verdict"] == "pass" and recorded["version"] == 1

    [status] = fake.state.statuses
    assert (
        status["sha"] == HEAD
        and status["state"] == "success"
        and status["description"] == ("PASS: 1 of 1 gates passed")
    )
    [comment] = fake.comments_on(REPO, PR)
    body = comment["body"]
    assert f"**Candidate:** `{model}` v1" in body
    assert f"[gate run #{run_id}]({live_server.url}/api/v1/gate-runs/{run_id})" in body

    written = [result.out, result.err, runner.summary.read_text(), runner.output.read_text()]
    written += [Path(outputs["report"]).read_text(), *(json.dumps(s.body) for s in fake.seen)]
    for text in written:
        assert api_tokens.writer not in text and WRITE not in text


def test_gate_run_takes_a_policy_too(
    cli: Any, runner: Runner, fake: FakeGitHub, live_server: LiveServer, api_tokens: Tokens
) -> None:
    model = registered(cli, live_server, api_tokens, runner.folder)
    args = ("--url", live_server.url, "--token", api_tokens.writer)
    result = cli({}, "gate", "run", model, "1", "--policy", "staging", "--json", *args)
    assert result.code == 0 and json.loads(result.out)["verdict"] == "pass"
    missing = cli({}, "gate", "run", model, "1", "--policy", "production", *args)
    assert missing.code == 2 and f"{model}@production has no gate policy" in missing.err
    both = cli({}, "gate", "run", model, "1", "--policy", "staging", "--spec", str(runner.folder / "gates.yaml"), *args)
    assert both.code == 2 and "not both" in both.err


def test_registry_refusal_is_not_a_github_matter(
    cli: Any, runner: Runner, fake: FakeGitHub, live_server: LiveServer, api_tokens: Tokens
) -> None:
    model = registered(cli, live_server, api_tokens, runner.folder)
    env = runner.env() | {"MODELKEEP_URL": live_server.url, "MODELKEEP_TOKEN": api_tokens.reader}
    result = cli(env, "ci", "gate", model, "1", "--spec", str(runner.folder / "gates.yaml"), "--record")
    assert result.code == 1 and "writer" in result.err, "a reader may not record: the registry's error, as usual"
    assert fake.seen == [] and not runner.summary.exists()
    assert api_tokens.reader not in result.out + result.err
