"""`registry monitor ...` against a real `registry serve` on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.csv
import pyarrow.parquet as pq
import pytest

from tests.automations.receivers import model_with_versions
from tests.conftest import LiveServer, Tokens, bearer, unique
from tests.monitoring.monitor_helpers import HOUR, frame, last_full_hour
from tests.registry.cli._helpers import Cli

SPEC = "version: 1\nwindow: 1h\nmin_rows: 200\n"


@pytest.fixture
def cli(live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(live_server, api_tokens.admin, capsys)


@pytest.fixture
def api(live_server: LiveServer, api_tokens: Tokens) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, headers=bearer(api_tokens.admin), timeout=30) as client:
        yield client


def _model(api: httpx.Client, versions: int = 1) -> str:
    name = unique("cli-mon")
    model_with_versions(api, name, versions)
    return name


def _parquet(path: Path, **kwargs: Any) -> Path:
    pq.write_table(frame(**kwargs), path)
    return path


def test_baseline_ingest_check_and_status(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    model = _model(api)
    ref = _parquet(tmp_path / "ref.parquet", rows=2000, seed=1)
    code, out, err = cli(
        "monitor", "baseline", "set", model, "1", "--data", str(ref),
        "--prediction", "score", "--target", "label", "--id", "id", "--timestamp", "ts",
    )  # fmt: skip
    assert code == 0, err
    assert "baseline of 2000 rows from upload" in out and "country (categorical)" in out
    shown = cli.json("monitor", "baseline", "show", model, "1")
    assert shown["rows"] == 2000 and shown["schema"]["timestamp"] == "ts"
    assert api.put(f"/api/v1/models/{model}/aliases/production", json={"version": 1}).status_code == 200

    spec = tmp_path / "monitor.yaml"
    spec.write_text(SPEC)
    assert cli("monitor", "set", model, "--spec", str(spec))[0] == 0
    assert cli("monitor", "show", model)[1].strip() == SPEC.strip()

    hour = last_full_hour() - HOUR
    calm = _parquet(tmp_path / "calm.parquet", rows=600, seed=2, start=hour)
    code, out, err = cli("monitor", "ingest", f"{model}@production", "--data", str(calm))
    assert code == 0 and f"600 rows of {model} v1 in 1 hourly bucket(s)" in out, err
    drifting = tmp_path / "drift.csv"
    pyarrow.csv.write_csv(frame(600, seed=3, start=hour + HOUR, shift=2.0, weights=(0.2, 0.3, 0.5)), drifting)
    assert cli("monitor", "ingest", f"{model}/1", "--data", str(drifting))[0] == 0

    report = tmp_path / "report.json"
    code, out, err = cli(
        "monitor", "check", f"{model}@production", "--window", "1h", "--end", (hour + HOUR).isoformat(),
        "--report-json", str(report),
    )  # fmt: skip
    assert code == 0, err
    assert "no drift" in out and "wasserstein" in out
    written = json.loads(report.read_text())
    assert {"model", "version", "window", "rows", "reference_rows", "drift_detected", "columns"} <= set(written)
    assert (written["model"], written["version"], written["rows"], written["drift_detected"]) == (model, 1, 600, False)
    assert set(written["columns"][0]) == {"column", "type", "method", "statistic", "threshold", "drifted"}

    code, out, err = cli("monitor", "check", f"{model}@production", "--end", (hour + 2 * HOUR).isoformat(), "--json")
    assert code == 1, err
    assert json.loads(out)["drift_detected"] is True

    code, out, _ = cli("monitor", "check", f"{model}@production", "--end", (hour - 3 * HOUR).isoformat())
    assert code == 3 and "too few rows" in out

    code, out, _ = cli("monitor", "status", model)
    assert code == 0 and "production" in out and "too few rows" in out
    [latest] = cli.json("monitor", "status", model)
    assert (latest["alias"], latest["status"]) == ("production", "insufficient_data")


def test_bad_input_and_unknown_things_have_their_exit_codes(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    model = _model(api)
    ref = _parquet(tmp_path / "ref.parquet", rows=500, seed=1)
    batch = _parquet(tmp_path / "batch.parquet", rows=50, seed=2)

    # Baselines: one source, not both or none; the version must exist.
    assert cli("monitor", "baseline", "set", model, "1")[0] == 2
    assert cli("monitor", "baseline", "set", model, "1", "--data", str(ref), "--artifact", "x:1")[0] == 2
    assert cli("monitor", "baseline", "set", model, "7", "--data", str(ref))[0] == 4
    code, _, err = cli("monitor", "baseline", "set", model, "1", "--data", str(ref), "--target", "nope")
    assert code == 2 and "nope" in err
    # No baseline yet: 4, for ingest and check alike.
    assert cli("monitor", "ingest", f"{model}/1", "--data", str(batch))[0] == 4
    assert cli("monitor", "baseline", "show", model, "1")[0] == 4
    assert cli("monitor", "baseline", "set", model, "1", "--data", str(ref), "--timestamp", "ts")[0] == 0
    assert api.put(f"/api/v1/models/{model}/aliases/production", json={"version": 1}).status_code == 200

    mismatched = tmp_path / "mismatch.parquet"
    pq.write_table(frame(50, seed=3).drop_columns(["country"]), mismatched)
    code, _, err = cli("monitor", "ingest", f"{model}@production", "--data", str(mismatched))
    assert code == 2 and "country" in err
    text = tmp_path / "batch.txt"
    text.write_text("a,b\n1,2\n")
    code, _, err = cli("monitor", "ingest", f"{model}@production", "--data", str(text))
    assert code == 2 and ".parquet" in err
    assert cli("monitor", "ingest", f"{model}@staging", "--data", str(batch))[0] == 4
    assert cli("monitor", "ingest", "no-such-model@production", "--data", str(batch))[0] == 4
    assert cli("monitor", "ingest", model, "--data", str(batch))[0] == 2  # neither @ALIAS nor /VERSION
    assert cli("monitor", "ingest", f"{model}@production", "--data", str(tmp_path / "missing.parquet"))[0] == 2

    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC + "alert_after: 3\n")
    code, _, err = cli("monitor", "set", model, "--spec", str(spec))
    assert code == 2 and "alert_after" in err
    assert cli("monitor", "show", model)[0] == 4

    assert cli("monitor", "check", f"{model}@production", "--window", "fortnight")[0] == 2
    assert cli("monitor", "check", f"{model}@staging")[0] == 4
    assert cli("monitor", "check", f"{model}/9")[0] == 4
    code, _, err = cli("monitor", "check", f"{model}@production", "--report-json", str(tmp_path / "no" / "r.json"))
    assert code == 2 and "does not exist" in err
