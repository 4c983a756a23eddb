"""Fixtures for the GitHub tests: the fake GitHub, a GitHub Actions step's environment, and the CLI run in-process
(``registry.cli.main``) the way a workflow step runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry.cli import main
from tests.conftest import free_port
from tests.github.fake_github import FakeGitHub

REPO = "acme/models"
HEAD = "1111111111111111111111111111111111111111"
"""The pull request's head commit: where statuses must land."""
MERGE = "2222222222222222222222222222222222222222"
"""The merge commit Actions puts in GITHUB_SHA on pull_request events: never a status target."""
PR = 7
WRITE, READ = "ghs_write", "ghs_read"

SPEC = """\
version: 1
defaults: {alpha: 0.05, on_inconclusive: fail}
gates:
  - {id: accuracy, kind: proportion, outcome: correct, threshold: 0.95}
"""
WARN_SPEC = SPEC.replace("on_inconclusive: fail", "on_inconclusive: warn")


def pull_request_event(
    *, number: int = PR, head_sha: str = HEAD, head_repo: str = REPO, action: str = "synchronize"
) -> dict[str, Any]:
    """The parts of a ``pull_request`` webhook payload that Actions writes to GITHUB_EVENT_PATH."""
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": head_sha, "ref": "feature", "repo": {"full_name": head_repo}},
            "base": {"sha": "3" * 40, "ref": "main", "repo": {"full_name": REPO}},
        },
        "repository": {"full_name": REPO},
    }


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Runner:
    """A GitHub Actions step's files and environment, in ``folder``."""

    folder: Path
    fake: FakeGitHub

    @property
    def summary(self) -> Path:
        return self.folder / "summary.md"

    @property
    def output(self) -> Path:
        return self.folder / "output.txt"

    def env(
        self, event: dict[str, Any] | None = None, *, token: str | None = WRITE, api_url: str | None = None
    ) -> dict[str, str]:
        event_path = self.folder / "event.json"
        event_path.write_text(json.dumps(event if event is not None else pull_request_event()), encoding="utf-8")
        env = {
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": "pull_request" if event is None or "pull_request" in event else "push",
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_SHA": MERGE,
            "GITHUB_API_URL": api_url or self.fake.api_url,
            "GITHUB_SERVER_URL": "https://github.example",
            "GITHUB_RUN_ID": "4242",
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "GITHUB_OUTPUT": str(self.output),
            "GITHUB_WORKSPACE": str(self.folder),
            "RUNNER_TEMP": str(self.folder / "tmp"),
        }
        (self.folder / "tmp").mkdir(exist_ok=True)
        if token is not None:
            env["GITHUB_TOKEN"] = token
        return env

    def outputs(self) -> dict[str, str]:
        if not self.output.exists():
            return {}
        return dict(line.split("=", 1) for line in self.output.read_text().splitlines() if "=" in line)


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.add_pull(REPO, PR, head_sha=HEAD)
        yield server


@pytest.fixture
def runner(tmp_path: Path, fake: FakeGitHub) -> Runner:
    (tmp_path / "gates.yaml").write_text(SPEC)
    return Runner(folder=tmp_path, fake=fake)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``cli(env, *args)``: the real ``registry`` command in this process, with exactly the GitHub and Modelkeep
    variables in ``env`` (whatever the test process inherited, e.g. when the tests themselves run in Actions)."""

    def run(env: dict[str, str], *args: str) -> Result:
        import os

        for key in list(os.environ):
            if key.startswith(("GITHUB_", "RUNNER_", "MODELKEEP_")):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def closed_port_url() -> str:
    """An API URL nothing listens on: GitHub unreachable."""
    return f"http://127.0.0.1:{free_port()}"


@dataclass(frozen=True)
class Tables:
    good: Path
    """Accuracy 0.995 on 4,000 examples: PASS."""
    bad: Path
    """Accuracy 0.9: FAIL."""
    small: Path
    """Accuracy 0.96 on 100 examples: INCONCLUSIVE."""


@pytest.fixture
def tables(tmp_path: Path) -> Tables:
    import pyarrow.parquet as pq

    from tests.registry.gates.test_gate_flow import eval_table

    made = Tables(tmp_path / "good.parquet", tmp_path / "bad.parquet", tmp_path / "small.parquet")
    pq.write_table(eval_table(4000, 20), made.good)
    pq.write_table(eval_table(4000, 400), made.bad)
    pq.write_table(eval_table(100, 4), made.small)
    return made
