"""Gates through the registry: evaluate a version's eval table, record runs, enforce policies on promotion."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from registry.cli import main
from tests.conftest import LiveServer, Tokens, unique

SPEC = """
version: 1
defaults: {alpha: 0.05, on_inconclusive: fail}
gates:
  - {id: accuracy, kind: proportion, outcome: correct, threshold: 0.95}
"""
PAIRED_SPEC = """
version: 1
gates:
  - {id: no-regression, kind: paired_noninferiority, baseline: "@champion", outcome: correct, margin: 0.01}
"""


def eval_table(n: int, wrong: int, seed_offset: int = 0) -> pa.Table:
    labels = [f"c{(i + seed_offset) % 3}" for i in range(n)]
    predictions = [("x" if i < wrong else label) for i, label in enumerate(labels)]
    return pa.table({"id": list(range(n)), "label": labels, "prediction": predictions})


def model_folder(tmp_path: Path, table: pa.Table, name: str) -> Path:
    folder = tmp_path / name
    (folder / "eval").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(name.encode())
    pq.write_table(table, folder / "eval" / "results.parquet")
    return folder


class Cli:
    def __init__(self, server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
        self.server, self.capsys = server, capsys

    def __call__(self, token: str, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*args, "--url", self.server.url, "--token", token])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def cli(live_server: LiveServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(live_server, capsys)


def test_policy_blocks_promotion_until_a_recorded_pass(cli: Cli, api_tokens: Tokens, tmp_path: Path) -> None:
    name = unique("gated")
    spec = tmp_path / "gates.yaml"
    spec.write_text(SPEC)
    assert cli(api_tokens.writer, "push", name, str(model_folder(tmp_path, eval_table(4000, 400), "bad")))[0] == 0
    assert cli(api_tokens.writer, "push", name, str(model_folder(tmp_path, eval_table(4000, 20), "good")))[0] == 0
    code, _, err = cli(api_tokens.writer, "gate", "policy", "set", name, "--alias", "production", "--spec", str(spec))
    assert code == 1 and "maintainer" in err
    set_policy = ("gate", "policy", "set", name, "--alias", "production", "--spec", str(spec))
    assert cli(api_tokens.maintainer, *set_policy)[0] == 0

    code, _, err = cli(api_tokens.maintainer, "promote", name, "2", "--to", "production")
    assert code == 1 and "no recorded gate run" in err and "gate run" in err

    code, out, _ = cli(api_tokens.writer, "gate", "run", name, "1", "--spec", str(spec), "--record", "--json")
    bad = json.loads(out)
    assert code == 1 and bad["verdict"] == "fail" and bad["id"]
    code, _, err = cli(api_tokens.maintainer, "promote", name, "1", "--to", "production")
    assert code == 1 and f"failed gate run #{bad['id']}" in err and "accuracy" in err

    md = tmp_path / "report.md"
    code, out, _ = cli(
        api_tokens.writer,
        "gate",
        "run",
        name,
        "2",
        "--spec",
        str(spec),
        "--record",
        "--commit",
        "abc123",
        "--report-md",
        str(md),
        "--json",
    )
    good = json.loads(out)
    assert code == 0 and good["verdict"] == "pass" and good["commit_sha"] == "abc123"
    assert "PASS" in md.read_text() and "accuracy" in md.read_text()
    code, out, _ = cli(api_tokens.maintainer, "promote", name, "2", "--to", "production", "--json")
    assert code == 0 and json.loads(out)["gate_run_id"] == good["id"]

    # Forcing past the policy: maintainer only, with a reason, and it is recorded as forced.
    code, _, err = cli(api_tokens.maintainer, "promote", name, "1", "--to", "production", "--force")
    assert code == 2 and "reason" in err
    code, out, _ = cli(
        api_tokens.maintainer,
        "promote",
        name,
        "1",
        "--to",
        "production",
        "--force",
        "--reason",
        "hotfix: v2 crashes on empty input",
        "--json",
    )
    assert code == 0 and json.loads(out)["forced"] is True
    code, out, _ = cli(api_tokens.reader, "versions", "show", name, "2", "--json")
    shown = json.loads(out)
    assert [r["verdict"] for r in shown["gate_runs"]] == ["pass"] and shown["gate_runs"][0]["commit_sha"] == "abc123"
    code, out, _ = cli(api_tokens.reader, "versions", "show", name, "1", "--json")
    forced = json.loads(out)["promotions"][0]
    assert forced["forced"] is True and forced["reason"].startswith("hotfix")


def test_mlflow_alias_moves_obey_the_same_policy(
    cli: Cli, api_tokens: Tokens, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name = unique("gated-mlflow")
    spec = tmp_path / "gates.yaml"
    spec.write_text(SPEC)
    cli(api_tokens.writer, "push", name, str(model_folder(tmp_path, eval_table(3000, 10), "m")))
    cli(api_tokens.maintainer, "gate", "policy", "set", name, "--alias", "staging", "--spec", str(spec))
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", api_tokens.maintainer)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(tracking_uri=cli.server.url, registry_uri=cli.server.url)
    with pytest.raises(MlflowException) as caught:
        client.set_registered_model_alias(name, "staging", "1")
    assert caught.value.error_code == "INVALID_STATE" and "gate" in caught.value.message
    assert cli(api_tokens.writer, "gate", "run", name, "1", "--spec", str(spec), "--record")[0] == 0
    client.set_registered_model_alias(name, "staging", "1")
    assert client.get_model_version_by_alias(name, "staging").version == "1"


def test_paired_gate_uses_the_baseline_alias_and_counts_reveals(cli: Cli, api_tokens: Tokens, tmp_path: Path) -> None:
    name = unique("paired")
    spec = tmp_path / "paired.yaml"
    spec.write_text(PAIRED_SPEC)
    cli(api_tokens.writer, "push", name, str(model_folder(tmp_path, eval_table(3000, 150), "champ")))
    cli(api_tokens.writer, "push", name, str(model_folder(tmp_path, eval_table(3000, 30), "cand")))
    code, _, err = cli(api_tokens.writer, "gate", "run", name, "2", "--spec", str(spec))
    assert code == 1 and "champion" in err and "not set" in err
    cli(api_tokens.writer, "promote", name, "1", "--to", "champion")
    code, out, _ = cli(api_tokens.writer, "gate", "run", name, "2", "--spec", str(spec), "--record", "--json")
    first = json.loads(out)
    assert code == 0 and first["baseline_version"] == 1 and first["reveal"] >= 1
    code, out, _ = cli(api_tokens.writer, "gate", "run", name, "2", "--spec", str(spec), "--record", "--json")
    second = json.loads(out)
    assert second["testset_digest"] == first["testset_digest"] and second["reveal"] == first["reveal"] + 1


def test_version_without_eval_table_is_a_clear_404(cli: Cli, api_tokens: Tokens, tmp_path: Path) -> None:
    name = unique("no-eval")
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"w")
    cli(api_tokens.writer, "push", name, str(folder))
    spec = tmp_path / "gates.yaml"
    spec.write_text(SPEC)
    code, _, err = cli(api_tokens.writer, "gate", "run", name, "1", "--spec", str(spec))
    assert code == 4 and "eval/" in err
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("version: 1\ngates:\n  - {id: a, kind: proportion, threshold: 0.9, threshhold: 0.9}\n")
    code, _, err = cli(api_tokens.writer, "gate", "run", name, "1", "--spec", str(bad_spec))
    assert code == 2 and "threshhold" in err and "Traceback" not in err


def test_offline_gate_run_exit_codes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "gates.yaml"
    spec.write_text(SPEC)
    good, bad, tiny = tmp_path / "good.parquet", tmp_path / "bad.csv", tmp_path / "tiny.parquet"
    pq.write_table(eval_table(4000, 20), good)
    _csv(eval_table(4000, 400), bad)
    pq.write_table(eval_table(30, 0), tiny)
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    assert (
        main(
            [
                "gate",
                "run",
                "--spec",
                str(spec),
                "--candidate",
                str(good),
                "--report-md",
                str(md),
                "--report-json",
                str(js),
            ]
        )
        == 0
    )
    assert json.loads(js.read_text())["verdict"] == "pass" and "accuracy" in md.read_text()
    assert main(["gate", "run", "--spec", str(spec), "--candidate", str(bad)]) == 1
    warn_spec = tmp_path / "warn.yaml"
    warn_spec.write_text(SPEC.replace("on_inconclusive: fail", "on_inconclusive: warn"))
    assert main(["gate", "run", "--spec", str(warn_spec), "--candidate", str(tiny)]) == 3
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\ngates: [{id: a, kind: proportion, threshold: 2}]\n")
    capsys.readouterr()
    assert main(["gate", "run", "--spec", str(broken), "--candidate", str(good)]) == 2
    assert "threshold" in capsys.readouterr().err


def _csv(table: pa.Table, path: Path) -> None:
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, path)
