"""`registry runs list|show`, `registry experiments list` and `registry audit` against a live server."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.client import RegistryClient
from tests.conftest import LiveServer, Tokens, unique
from tests.registry.cli._helpers import Cli


@pytest.fixture
def cli(live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(live_server, api_tokens.reader, capsys)


@pytest.fixture
def experiment(live_server: LiveServer, api_tokens: Tokens) -> tuple[dict[str, object], list[str]]:
    with RegistryClient(live_server.url, api_tokens.writer) as api:
        made = api.create_experiment(unique("exp"))
        ids = []
        for i, lr in enumerate(["0.1", "0.01"]):
            run = api.create_run(experiment_id=made["id"], name=f"trial-{i}", start_time=1_700_000_000_000 + i)
            api.log_batch(run["id"], params={"lr": lr}, metrics=[{"key": "auc", "value": 0.9 + i / 100, "step": 3}])
            ids.append(run["id"])
    return made, ids


def test_runs_list_and_show(cli: Cli, experiment: tuple[dict[str, object], list[str]]) -> None:
    made, ids = experiment
    listed = cli.json("runs", "list", "--experiment", str(made["name"]))
    assert [r["id"] for r in listed] == ids[::-1]  # newest first
    assert {r["name"] for r in listed} == {"trial-0", "trial-1"} and all(r["status"] == "RUNNING" for r in listed)
    assert [r["id"] for r in cli.json("runs", "list", "--experiment", str(made["id"]), "--limit", "1")] == [ids[1]]
    code, out, err = cli("runs", "list", "--experiment", str(made["name"]))
    assert code == 0 and ids[0] in out and "trial-1" in out, err

    shown = cli.json("runs", "show", ids[0])
    assert shown["params"] == {"lr": "0.1"} and shown["metrics"][0] | {"timestamp": 0} == {
        "key": "auc",
        "value": 0.9,
        "step": 3,
        "timestamp": 0,
    }
    code, out, err = cli("runs", "show", ids[0])
    assert code == 0 and "lr" in out and "0.1" in out and "auc" in out and "0.9" in out, err

    code, _, err = cli("runs", "show", "0" * 32)
    assert code == 4 and "Traceback" not in err
    code, _, err = cli("runs", "list", "--experiment", unique("no-such-experiment"))
    assert code == 4 and "does not exist" in err, err


def test_experiments_list(cli: Cli, experiment: tuple[dict[str, object], list[str]]) -> None:
    made, _ = experiment
    listed = cli.json("experiments", "list")
    mine = [e for e in listed if e["id"] == made["id"]]
    assert mine and set(mine[0]) == {"id", "name", "lifecycle_stage", "created_at"}
    code, out, err = cli("experiments", "list")
    assert code == 0 and str(made["name"]) in out, err


def test_audit_is_for_admins(cli: Cli, api_tokens: Tokens, tmp_path: Path) -> None:
    model = unique()
    spec = tmp_path / "gates.yaml"
    spec.write_text("version: 1\ngates:\n  - {id: acc, kind: proportion, outcome: correct, threshold: 0.9}\n")
    with RegistryClient(cli.server.url, api_tokens.writer) as api:
        api.create_model(model)
    for _ in range(2):
        code, _, err = cli("gate", "policy", "set", model, "--alias", "production", "--spec", str(spec),
                           token=api_tokens.maintainer)  # fmt: skip
        assert code == 0, err

    entries = cli.json("audit", "--action", "gate_policy.set", token=api_tokens.admin)
    mine = [e for e in entries if e["target"] == f"{model}@production"]
    assert len(mine) == 2 and mine[0]["actor"] == "test-maintainer"
    assert set(mine[0]) == {"id", "action", "actor", "target", "details", "created_at", "request_id"}
    after = cli.json("audit", "--after", str(mine[0]["id"]), "--limit", "1", token=api_tokens.admin)
    assert len(after) == 1 and after[0]["id"] > mine[0]["id"]

    code, out, err = cli("audit", "--after", str(mine[0]["id"] - 1), "--limit", "1", token=api_tokens.admin)
    assert code == 0 and "gate_policy.set" in out and f"--after {mine[0]['id']}" in err, err
    code, _, err = cli("audit")
    assert code == 1 and "higher role" in err
