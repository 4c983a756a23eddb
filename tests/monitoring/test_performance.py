"""The promotion gate re-tested on labelled production rows, per window, through the real ASGI app and the
`gates` engine, on SQLite and PostgreSQL: a FAIL writes monitor.performance_degraded, a PASS or an
INCONCLUSIVE writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.automations.receivers import model_with_versions
from tests.conftest import LiveServer, Tokens, bearer, unique
from tests.monitoring.monitor_helpers import (
    HOUR,
    PARQUET,
    frame,
    ingest,
    last_full_hour,
    new_model,
    parquet,
    promote,
    set_baseline,
)
from tests.registry.cli._helpers import Cli

MONITOR_SPEC = "version: 1\nwindow: 1h\nmin_rows: 20\n"
GATES = """\
version: 1
defaults: {alpha: 0.05}
gates:
  - {id: accuracy, kind: proportion, outcome: correct, threshold: 0.9}
"""


def _predicted(rows: int, *, seed: int, correct: int, start: datetime) -> pa.Table:
    """``frame`` rows whose prediction (``pred``, a class) equals the label on exactly ``correct`` rows."""
    table = frame(rows, seed=seed, start=start)
    labels = np.asarray(table.column("label").to_numpy())
    right = np.zeros(rows, dtype=bool)
    right[np.random.default_rng(seed).permutation(rows)[:correct]] = True
    return table.append_column("pred", pa.array(np.where(right, labels, 1 - labels)))


async def _monitored(api: httpx.AsyncClient, *, policy: bool = True) -> str:
    """v1 on production with a baseline predicting ``pred``, a monitor spec and (after the promotion, which it
    would otherwise block) the accuracy gate as production's policy."""
    model = await new_model(api)
    reference = _predicted(500, seed=1, correct=480, start=last_full_hour() - 30 * HOUR)
    await set_baseline(api, model, 1, reference, prediction="pred", categorical="pred")
    await promote(api, model, 1)
    assert (await api.put(f"/api/v1/models/{model}/monitor", json={"spec": MONITOR_SPEC})).status_code == 200
    if policy:
        made = await api.put(f"/api/v1/models/{model}/gate-policies/production", json={"spec": GATES})
        assert made.status_code == 200, made.text
    return model


async def _label(api: httpx.AsyncClient, model: str, table: pa.Table) -> None:
    sent = await api.post(
        f"/api/v1/models/{model}/monitor/labels", content=parquet(table.select(["id", "label"])), headers=PARQUET
    )
    assert sent.status_code == 200, sent.text


async def _check(api: httpx.AsyncClient, model: str, end: datetime, **params: Any) -> dict[str, Any]:
    follow = {} if "version" in params else {"alias": "production"}
    done = await api.post(f"/api/v1/models/{model}/monitor/checks", params={**follow, "end": end.isoformat(), **params})
    assert done.status_code == 200, done.text
    return dict(done.json())


async def _degraded(api: httpx.AsyncClient, model: str) -> list[dict[str, Any]]:
    found = (await api.get("/api/v1/events", params={"model": model, "limit": 1000})).json()["items"]
    return [e for e in found if e["type"] == "monitor.performance_degraded"]


async def test_a_fail_on_labelled_rows_writes_performance_degraded(app_client: httpx.AsyncClient) -> None:
    model = await _monitored(app_client)
    hour = last_full_hour() - HOUR
    bad = _predicted(300, seed=31, correct=210, start=hour)  # 70 % against a 90 % gate
    good = _predicted(300, seed=32, correct=297, start=hour + HOUR)  # 99 %
    for table in (bad, good):
        assert (await ingest(app_client, model, table)).status_code == 200
        await _label(app_client, model, table)

    failed = await _check(app_client, model, hour + HOUR)
    performance = failed["performance"]
    assert (performance["status"], performance["verdict"], performance["labelled"]) == ("evaluated", "fail", 300)
    assert performance["policy_alias"] == "production" and performance["alert"] == "monitor.performance_degraded"
    [gate] = performance["report"]["gates"]
    assert (gate["gate_id"], gate["status"]) == ("accuracy", "FAIL")
    [result] = performance["report"]["results"]
    assert result["n"] == 300 and abs(result["estimate"] - 0.7) < 1e-9

    [event] = await _degraded(app_client, model)
    data = event["data"]
    assert (data["model"], data["version"], data["alias"], data["check_id"]) == (model, 1, "production", failed["id"])
    assert data["verdict"] == "fail" and data["labelled"] == 300 and data["window"] == failed["window"]
    assert [g["gate_id"] for g in data["failing"]] == ["accuracy"]
    assert data["check_url"] == f"/api/v1/models/{model}/monitor/checks/{failed['id']}"
    assert data["report_url"] == data["check_url"] + "/report.html"

    # The next window holds only the good rows: a PASS, which writes nothing.
    passed = await _check(app_client, model, hour + 2 * HOUR)
    assert (passed["performance"]["verdict"], passed["performance"]["labelled"]) == ("pass", 300)
    assert passed["performance"]["alert"] is None
    assert len(await _degraded(app_client, model)) == 1

    # Stored with the check, listed, and shown by the status.
    shown = (await app_client.get(f"/api/v1/models/{model}/monitor/checks/{failed['id']}")).json()
    assert shown["performance"] == performance
    [latest] = (await app_client.get(f"/api/v1/models/{model}/monitor/status")).json()
    assert latest["id"] == passed["id"] and latest["performance"]["verdict"] == "pass"

    # A check of the version by number re-tests production's policy too, but raises no alert (ad hoc).
    by_number = await _check(app_client, model, hour + HOUR, version=1)
    assert by_number["performance"]["verdict"] == "fail" and by_number["performance"]["alert"] is None
    assert len(await _degraded(app_client, model)) == 1


async def test_an_inconclusive_window_writes_nothing(app_client: httpx.AsyncClient) -> None:
    model = await _monitored(app_client)
    hour = last_full_hour()
    table = _predicted(30, seed=33, correct=27, start=hour)  # 90 % of 30: the data cannot tell
    assert (await ingest(app_client, model, table)).status_code == 200
    await _label(app_client, model, table)
    done = await _check(app_client, model, hour + HOUR)
    performance = done["performance"]
    assert (performance["verdict"], performance["labelled"]) == ("inconclusive", 30)
    # The promotion rule (on_inconclusive: fail) would refuse it; the monitor only alerts on evidence.
    assert performance["report"]["verdict"] == "fail"
    assert [g["status"] for g in performance["report"]["gates"]] == ["INCONCLUSIVE"]
    assert performance["alert"] is None and await _degraded(app_client, model) == []


async def test_without_labels_or_without_a_policy_nothing_is_evaluated(app_client: httpx.AsyncClient) -> None:
    model = await _monitored(app_client, policy=False)
    hour = last_full_hour()
    table = _predicted(100, seed=34, correct=10, start=hour)
    assert (await ingest(app_client, model, table)).status_code == 200
    assert (await _check(app_client, model, hour + HOUR))["performance"] is None  # no labels yet

    await _label(app_client, model, table.slice(0, 60))
    performance = (await _check(app_client, model, hour + HOUR))["performance"]
    assert (performance["status"], performance["verdict"], performance["labelled"]) == ("no_policy", None, 60)
    assert "has no gate policy" in performance["message"]
    assert await _degraded(app_client, model) == []


async def test_paired_gates_are_left_out_and_say_so(app_client: httpx.AsyncClient) -> None:
    model = await _monitored(app_client, policy=False)
    paired = GATES + '  - {id: no-regression, kind: paired_noninferiority, baseline: "@production", margin: 0.01}\n'
    made = await app_client.put(f"/api/v1/models/{model}/gate-policies/production", json={"spec": paired})
    assert made.status_code == 200, made.text
    hour = last_full_hour()
    table = _predicted(200, seed=35, correct=120, start=hour)
    assert (await ingest(app_client, model, table)).status_code == 200
    await _label(app_client, model, table)
    performance = (await _check(app_client, model, hour + HOUR))["performance"]
    assert performance["verdict"] == "fail" and performance["skipped_gates"] == ["no-regression"]
    assert [g["gate_id"] for g in performance["report"]["gates"]] == ["accuracy"]
    assert len(await _degraded(app_client, model)) == 1


# -- the CLI ----------------------------------------------------------------------------------------------
@pytest.fixture
def cli(live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(live_server, api_tokens.admin, capsys)


@pytest.fixture
def api(live_server: LiveServer, api_tokens: Tokens) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, headers=bearer(api_tokens.admin), timeout=30) as client:
        yield client


def test_monitor_check_and_status_show_the_verdict_on_labels(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    model = unique("cli-perf")
    model_with_versions(api, model, 1)
    reference = tmp_path / "ref.parquet"
    pq.write_table(_predicted(500, seed=1, correct=480, start=last_full_hour() - 30 * HOUR), reference)
    code, _, err = cli(
        "monitor", "baseline", "set", model, "1", "--data", str(reference),
        "--prediction", "pred", "--target", "label", "--id", "id", "--timestamp", "ts",
    )  # fmt: skip
    assert code == 0, err
    assert api.put(f"/api/v1/models/{model}/aliases/production", json={"version": 1}).status_code == 200
    assert api.put(f"/api/v1/models/{model}/monitor", json={"spec": MONITOR_SPEC}).status_code == 200
    assert api.put(f"/api/v1/models/{model}/gate-policies/production", json={"spec": GATES}).status_code == 200
    hour = last_full_hour()
    batch = tmp_path / "batch.parquet"
    rows = _predicted(300, seed=36, correct=200, start=hour)
    pq.write_table(rows, batch)
    assert cli("monitor", "ingest", f"{model}@production", "--data", str(batch))[0] == 0
    labels = tmp_path / "labels.parquet"
    pq.write_table(rows.select(["id", "label"]), labels)
    assert cli("monitor", "labels", model, "--data", str(labels))[0] == 0

    code, out, err = cli("monitor", "check", f"{model}@production", "--end", (hour + HOUR).isoformat())
    assert code == 0, err  # no drift: the exit code is the drift check's
    assert "performance: FAIL on 300 labelled rows (@production policy: accuracy FAIL)" in out
    assert "alert: monitor.performance_degraded" in out
    code, out, _ = cli("monitor", "status", model)
    assert code == 0 and "FAIL" in out and "no drift" in out
    [latest] = cli.json("monitor", "status", model)
    assert latest["performance"]["verdict"] == "fail"
