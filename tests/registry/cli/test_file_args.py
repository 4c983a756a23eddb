"""Every file argument of the CLI: a clear message and exit 2, never a traceback; `gate run` finds gates.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LiveServer, Tokens, unique
from tests.registry.cli._helpers import Cli

SPEC = """version: 1
gates:
  - {id: per-country, kind: proportion, outcome: correct, slice_by: [country], threshold: 0.9}
"""


@pytest.fixture
def cli(live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(live_server, api_tokens.maintainer, capsys)


@pytest.fixture
def gate_files(tmp_path: Path) -> tuple[Path, Path]:
    spec = tmp_path / "gates.yaml"
    spec.write_text(SPEC)
    rows = ["id,correct,country"] + [f"{i},{0 if i % 50 == 0 else 1},{'DE' if i % 2 else 'FR'}" for i in range(400)]
    candidate = tmp_path / "eval.csv"
    candidate.write_text("\n".join(rows) + "\n")
    return spec, candidate


def _usage_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_report_files_that_cannot_be_written(cli: Cli, gate_files: tuple[Path, Path], tmp_path: Path) -> None:
    spec, candidate = gate_files
    offline = ("gate", "run", "--spec", str(spec), "--candidate", str(candidate))
    code, _, err = cli.bare(*offline, "--report-md", "/nonexistent/dir/r.md")
    _usage_error(code, err, "--report-md", "/nonexistent/dir")
    code, _, err = cli.bare(*offline, "--report-json", str(tmp_path))
    _usage_error(code, err, "--report-json", "folder")
    # Checked before anything runs: an unreachable server is not even contacted, nothing gets recorded.
    code, _, err = cli.bare(
        "gate", "run", "fraud", "3", "--spec", str(spec), "--record", "--report-md", "/nonexistent/dir/r.md",
        "--url", "http://127.0.0.1:9",
    )  # fmt: skip
    _usage_error(code, err, "--report-md")
    code, _, err = cli.bare(*offline, "--report-md", str(tmp_path / "r.md"), "--report-json", str(tmp_path / "r.json"))
    assert code == 0, err
    assert (tmp_path / "r.md").read_text().startswith("###") and (tmp_path / "r.json").read_text().startswith("{")


def test_input_files_that_cannot_be_read(cli: Cli, gate_files: tuple[Path, Path], tmp_path: Path) -> None:
    spec, candidate = gate_files
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    code, _, err = cli.bare("gate", "run", "--spec", str(binary), "--candidate", str(candidate))
    _usage_error(code, err, "--spec", "UTF-8")
    code, _, err = cli.bare("gate", "run", "--spec", str(spec), "--candidate", str(binary))
    _usage_error(code, err, "--candidate")
    code, _, err = cli.bare(
        "gate", "run", "--spec", str(spec), "--candidate", str(candidate), "--baseline", str(binary)
    )
    _usage_error(code, err, "--baseline")
    code, _, err = cli.bare("gate", "run", "--spec", str(tmp_path / "missing.yaml"), "--candidate", str(candidate))
    _usage_error(code, err, "--spec", "missing.yaml")
    code, _, err = cli("gate", "policy", "set", unique(), "--alias", "production", "--spec", str(binary))
    _usage_error(code, err, "--spec", "UTF-8")
    code, _, err = cli("push", unique(), str(tmp_path / "nothing-here"))
    _usage_error(code, err, "nothing-here")
    # Commands that do not name their files yet still end with a message, not a traceback.
    code, _, err = cli("automations", "apply", str(binary))
    _usage_error(code, err, "not UTF-8 text")


def test_pull_destinations_that_cannot_be_used(cli: Cli, tmp_path: Path) -> None:
    name = unique()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"w")
    assert cli("push", name, str(tmp_path / "model"))[0] == 0
    existing = tmp_path / "existing-file"
    existing.write_text("keep me")
    code, _, err = cli("pull", f"{name}/1", str(existing))
    _usage_error(code, err, "existing-file", "not a folder")
    assert existing.read_text() == "keep me"
    code, _, err = cli("pull", f"{name}/1", "/proc/nope")
    _usage_error(code, err, "/proc/nope")
    code, _, err = cli("pull", f"{name}/1", str(existing / "below"))
    _usage_error(code, err, "existing-file")


def test_gate_run_finds_gates_yaml_here(
    cli: Cli, gate_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, candidate = gate_files
    monkeypatch.chdir(tmp_path)
    code, out, err = cli.bare("gate", "run", "--candidate", str(candidate))
    assert code == 0 and "PASS" in out, err
    spec.rename(tmp_path / "gates.yml")
    code, out, err = cli.bare("gate", "run", "--candidate", str(candidate), "--json")
    assert code == 0 and '"verdict": "pass"' in out, err
    (tmp_path / "gates.yml").unlink()
    code, _, err = cli.bare("gate", "run", "--candidate", str(candidate))
    _usage_error(code, err, "no --spec given and no gates.yaml here")


def test_sliced_gate_rows_show_their_slice(cli: Cli, gate_files: tuple[Path, Path]) -> None:
    spec, candidate = gate_files
    code, out, err = cli.bare("gate", "run", "--spec", str(spec), "--candidate", str(candidate))
    assert code == 0, err
    assert "per-country[country=DE]" in out and "per-country[country=FR]" in out


def test_table_cells_are_text_not_markup(cli: Cli, tmp_path: Path) -> None:
    name = unique()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"w")
    description = "[/] retrained [bold]twice[/bold]"
    assert cli("push", name, str(tmp_path / "model"), "--description", description)[0] == 0
    code, out, err = cli("versions", "show", name, "1")
    assert code == 0 and description in out, err
