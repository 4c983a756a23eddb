"""action.yml: valid composite metadata, every input reaching the CLI, and its shell steps run as the Actions runner
runs them (there is no runner here): ``bash --noprofile --norc -eo pipefail`` on each ``run:`` script, with the
step's ``env:`` evaluated from the inputs, against the fake GitHub and a real registry (SQLite and PostgreSQL).

``uses:`` steps (setup-python, cache) are GitHub's; the install step runs against a recording ``python`` (pip
would need the network), and the gate step runs the ``registry`` command of this checkout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, LiveServer, Tokens
from tests.github.conftest import HEAD, PR, READ, REPO, WARN_SPEC, WRITE, Runner, Tables
from tests.github.fake_github import FakeGitHub
from tests.github.test_ci_registry import registered

ACTION = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
STEPS: list[dict[str, Any]] = ACTION["runs"]["steps"]
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
BIN = Path(sys.executable).parent
"""The checkout's virtual environment: ``registry`` as the install step would have installed it."""

# Where each input goes. The test fails when an input is declared but missing here, so a new input must be
# wired to the CLI (and listed) before it ships.
AS_ARGUMENTS = {
    "model": ["m-1"],
    "version": ["3"],
    "spec": ["--spec", "s.yaml"],
    "policy": ["--policy", "staging"],
    "candidate": ["--candidate", "c.parquet"],
    "baseline": ["--baseline", "b.parquet"],
    "record": ["--record"],
    "name": ["--name", "quality"],
    "comment": ["--no-comment"],
    "github-report": ["--github-report", "check"],
    "fail-on-inconclusive": ["--fail-on-inconclusive"],
}
AS_ENVIRONMENT = {"registry-url": "MODELKEEP_URL", "registry-token": "MODELKEEP_TOKEN", "github-token": "GITHUB_TOKEN"}
TO_SETUP_PYTHON = {"python-version"}
TRACE_VALUES = {
    "model": "m-1",
    "version": "3",
    "spec": "s.yaml",
    "policy": "staging",
    "candidate": "c.parquet",
    "baseline": "b.parquet",
    "record": "true",
    "name": "quality",
    "comment": "false",
    "github-report": "check",
    "fail-on-inconclusive": "true",
}


def step(name: str) -> dict[str, Any]:
    [found] = [s for s in STEPS if s.get("name") == name or s.get("id") == name]
    return found


def evaluate(text: str, inputs: dict[str, str], github_token: str) -> str:
    """``${{ inputs.NAME }}`` (and ``${{ github.token }}`` in a default), as the runner evaluates them."""

    def value(match: re.Match[str]) -> str:
        expression = match[1]
        if expression == "github.token":
            return github_token
        assert expression.startswith("inputs."), f"only inputs are evaluated in this test: {expression}"
        name = expression.removeprefix("inputs.")
        if name in inputs:
            return inputs[name]
        default = str(ACTION["inputs"][name].get("default", ""))
        return evaluate(default, inputs, github_token)

    return EXPRESSION.sub(value, text)


@dataclass
class StepRun:
    code: int
    out: str
    err: str


def run_step(
    name: str, runner: Runner, inputs: dict[str, str], *, path: list[Path] | None = None, trace: bool = False
) -> StepRun:
    """One ``run:`` step: its script in a file, run by bash with the runner's flags and the step's env."""
    found = step(name)
    script = runner.folder / f"step-{found.get('id', 'x')}.sh"
    script.write_text(found["run"], encoding="utf-8")
    env = {k: v for k, v in runner.env(token=None).items()}
    env |= {
        "PATH": os.pathsep.join([*(str(p) for p in path or []), str(BIN), "/usr/bin", "/bin"]),
        "HOME": str(runner.folder),
        "LANG": "C.UTF-8",
        "GITHUB_ACTION_PATH": str(ROOT),
        "GITHUB_PATH": str(runner.folder / "path.txt"),
    }
    github_token = inputs.pop("__github.token", WRITE)
    env |= {key: evaluate(str(value), inputs, github_token) for key, value in (found.get("env") or {}).items()}
    flags = ["--noprofile", "--norc", "-eo", "pipefail", *(["-x"] if trace else [])]
    done = subprocess.run(
        ["bash", *flags, str(script)], env=env, cwd=runner.folder, capture_output=True, text=True, timeout=120
    )
    return StepRun(done.returncode, done.stdout, done.stderr)


# -- metadata -------------------------------------------------------------------------------------------------
def test_metadata_is_a_valid_composite_action() -> None:
    assert ACTION["runs"]["using"] == "composite" and ACTION["name"] and ACTION["description"]
    declared = set(ACTION["inputs"])
    assert declared == set(AS_ARGUMENTS) | set(AS_ENVIRONMENT) | TO_SETUP_PYTHON
    assert all("description" in spec for spec in ACTION["inputs"].values())
    assert ACTION["inputs"]["github-token"]["default"] == "${{ github.token }}"
    assert {k: v["value"] for k, v in ACTION["outputs"].items()} == {
        "verdict": "${{ steps.gate.outputs.verdict }}",
        "gate-run-id": "${{ steps.gate.outputs.gate-run-id }}",
        "report": "${{ steps.gate.outputs.report }}",
    }
    for each in STEPS:
        if "run" in each:
            assert each["shell"] == "bash", "composite run steps must name their shell"
            assert "${{" not in each["run"], "inputs reach scripts through env, never interpolated (injection)"
        else:
            assert re.fullmatch(r"actions/[a-z-]+@v\d+", each["uses"])
    assert step("Set up Python")["with"]["python-version"] == "${{ inputs.python-version }}"
    assert step("Cache pip downloads")["with"]["path"] == "~/.cache/pip"


def test_every_input_is_passed_on() -> None:
    """Statically: each input is read by exactly the step that hands it to the CLI (or to setup-python)."""
    used: dict[str, set[str]] = {}
    for each in STEPS:
        for value in [*(each.get("env") or {}).values(), *(each.get("with") or {}).values()]:
            for expression in EXPRESSION.findall(str(value)):
                if expression.startswith("inputs."):
                    used.setdefault(expression.removeprefix("inputs."), set()).add(each.get("id") or each["name"])
    assert set(used) == set(ACTION["inputs"])
    gate_env = step("gate")["env"]
    for name, variable in AS_ENVIRONMENT.items():
        assert gate_env[variable] == f"${{{{ inputs.{name} }}}}"


def test_every_input_reaches_the_cli_arguments(runner: Runner) -> None:
    """Dynamically: with every input set, the traced ``registry`` command line carries each one's flag."""
    result = run_step("gate", runner, dict(TRACE_VALUES), trace=True)
    [line] = [ln for ln in result.err.splitlines() if ln.startswith("+ registry ci gate")]
    argv = line.removeprefix("+ registry ").split()
    for name, expected in AS_ARGUMENTS.items():
        at = [i for i in range(len(argv)) if argv[i : i + len(expected)] == expected]
        assert at, f"input {name} did not reach the CLI as {expected}: {argv}"
    assert result.code == 2, "model + candidate together is bad input for the CLI itself"


def test_mask_step_masks_the_registry_token_only_when_given(runner: Runner) -> None:
    given = run_step("Mask the registry token", runner, {"registry-token": "mk_secret"})
    assert given.code == 0 and given.out == "::add-mask::mk_secret\n"
    empty = run_step("Mask the registry token", runner, {})
    assert empty.code == 0 and empty.out == ""


def test_install_step_installs_the_action_checkout(runner: Runner) -> None:
    stub = runner.folder / "stub"
    stub.mkdir()
    (stub / "python").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{runner.folder}/pip-args"\n')
    (stub / "python").chmod(0o755)
    result = run_step("Install the Modelkeep CLI (the action's own ref)", runner, {}, path=[stub])
    assert result.code == 0, result.err
    args = (runner.folder / "pip-args").read_text().splitlines()
    assert args[:3] == ["-m", "pip", "install"] and args[-1] == str(ROOT)
    assert (ROOT / "pyproject.toml").is_file(), "the action's checkout is the installable project"


# -- the gate step ---------------------------------------------------------------------------------------------
def test_gate_step_against_the_registry(
    runner: Runner, fake: FakeGitHub, live_server: LiveServer, api_tokens: Tokens, cli: Any
) -> None:
    model = registered(cli, live_server, api_tokens, runner.folder)
    inputs = {
        "registry-url": live_server.url,
        "registry-token": api_tokens.writer,
        "model": model,
        "version": "1",
        "policy": "staging",
        "record": "true",
        "name": "quality",
    }
    result = run_step("gate", runner, inputs)
    assert result.code == 0, result.err
    outputs = runner.outputs()
    assert outputs["verdict"] == "pass" and outputs["gate-run-id"].isdigit() and Path(outputs["report"]).is_file()
    [status] = fake.state.statuses
    assert status["sha"] == HEAD and status["context"] == "modelkeep/gate/quality" and status["state"] == "success"
    [comment] = fake.comments_on(REPO, PR)
    assert comment["body"].startswith("<!-- modelkeep-gate:quality -->")
    for text in (result.out, result.err, runner.summary.read_text(), runner.output.read_text()):
        assert api_tokens.writer not in text and WRITE not in text


def test_gate_step_offline_fail_and_inconclusive(runner: Runner, fake: FakeGitHub, tables: Tables) -> None:
    spec = runner.folder / "warn.yaml"
    spec.write_text(WARN_SPEC)
    failed = run_step("gate", runner, {"spec": "gates.yaml", "candidate": str(tables.bad)})
    assert failed.code == 1 and runner.outputs()["verdict"] == "fail"
    assert fake.state.statuses[-1]["state"] == "failure"

    unsure = run_step("gate", runner, {"spec": str(spec), "candidate": str(tables.small), "comment": "false"})
    assert unsure.code == 0, "INCONCLUSIVE under on_inconclusive: warn does not fail the step"
    assert "::warning title=Modelkeep gate::INCONCLUSIVE" in unsure.out
    assert fake.state.statuses[-1]["state"] == "success" and runner.outputs()["verdict"] == "inconclusive"

    strict = run_step(
        "gate", runner, {"spec": str(spec), "candidate": str(tables.small), "fail-on-inconclusive": "true"}
    )
    assert strict.code == 1 and fake.state.statuses[-1]["state"] == "failure"
    assert len(fake.comments_on(REPO, PR)) == 1


def test_gate_step_with_a_fork_token_keeps_the_result(runner: Runner, fake: FakeGitHub, tables: Tables) -> None:
    result = run_step("gate", runner, {"candidate": str(tables.bad), "__github.token": READ})
    assert result.code == 1 and "::warning" in result.out and "403" in result.out
    assert fake.state.statuses == [] and "Modelkeep gate: FAIL" in runner.summary.read_text()


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"record": "yes"}, "input record must be true or false, not 'yes'"),
        ({"comment": "False"}, "input comment must be true or false"),
        ({"model": "m"}, "give both model and version"),
        ({"github-report": "both"}, "--github-report"),
    ],
)
def test_gate_step_bad_input_is_exit_2(
    runner: Runner, fake: FakeGitHub, tables: Tables, inputs: dict[str, str], message: str
) -> None:
    result = run_step("gate", runner, {"candidate": str(tables.good), **inputs})
    assert result.code == 2 and message in result.out + result.err
    assert fake.seen == []
