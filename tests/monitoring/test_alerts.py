"""Drift alerts end to end: a real `registry serve` on a fresh database, checks through its API, and a real
webhook receiver that verifies every request with the standardwebhooks reference library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from tests.automations.receivers import Receiver, client, model_with_versions, stack, subscribe, wait_until
from tests.conftest import unique
from tests.monitoring.monitor_helpers import (
    BASELINE_OPTIONS,
    HOUR,
    PARQUET,
    frame,
    last_full_hour,
    parquet,
)

SPEC = "version: 1\nwindow: 1h\nmin_rows: 200\n"
DRIFTED: dict[str, Any] = {"shift": 2.0, "weights": (0.2, 0.3, 0.5)}


def _send(api: httpx.Client, model: str, table: pa.Table) -> None:
    sent = api.post(
        f"/api/v1/models/{model}/monitor/batches", content=parquet(table), headers=PARQUET,
        params={"alias": "production"},
    )  # fmt: skip
    assert sent.status_code == 200, sent.text


def _check(api: httpx.Client, model: str, end: Any) -> dict[str, Any]:
    found = api.post(f"/api/v1/models/{model}/monitor/checks", params={"alias": "production", "end": end.isoformat()})
    assert found.status_code == 200, found.text
    return dict(found.json())


def test_drift_detected_then_resolved_are_delivered_signed_and_a_persisting_drift_does_not_repeat(
    database_url: str, tmp_path: Path
) -> None:
    with stack(database_url, tmp_path) as made, Receiver() as receiver:
        server = made.serve()
        with client(server, made.tokens.admin) as api:
            model = unique("alerted")
            model_with_versions(api, model, 1)
            made_baseline = api.put(
                f"/api/v1/models/{model}/versions/1/monitor/baseline", content=parquet(frame(2000, seed=1)),
                headers=PARQUET, params=BASELINE_OPTIONS,
            )  # fmt: skip
            assert made_baseline.status_code == 200, made_baseline.text
            assert api.put(f"/api/v1/models/{model}/aliases/production", json={"version": 1}).status_code == 200
            assert api.put(f"/api/v1/models/{model}/monitor", json={"spec": SPEC}).status_code == 200
            subscribe(api, receiver, ["drift.detected", "drift.resolved"], model=model)

            start = last_full_hour() - 3 * HOUR
            plan: list[dict[str, Any]] = [{}, DRIFTED, DRIFTED, {}]  # calm, drift, drift persists, calm again
            for i, extra in enumerate(plan):
                _send(api, model, frame(500, seed=10 + i, start=start + i * HOUR, **extra))
            checks = [_check(api, model, start + (i + 1) * HOUR) for i in range(len(plan))]
            assert [c["alert"] for c in checks] == [None, "drift.detected", None, "drift.resolved"]

            payloads = wait_until(lambda: len(receiver.payloads()) >= 2 and receiver.payloads(), what="two alerts")
            events = api.get("/api/v1/events", params={"model": model, "limit": 1000}).json()["items"]

        drift_events = [e for e in events if e["type"].startswith("drift.")]
        assert [e["type"] for e in drift_events] == ["drift.detected", "drift.resolved"]  # the persisting one: none
        assert sorted(p["type"] for p in payloads) == ["drift.detected", "drift.resolved"]
        hits = receiver.snapshot()
        assert all(h.verified for h in hits)  # signed with the endpoint's secret
        assert {h.id for h in hits} == {e["id"] for e in drift_events}  # webhook-id is the event id

        [detected] = [p for p in payloads if p["type"] == "drift.detected"]
        data = detected["data"]
        assert (data["model"], data["version"], data["alias"]) == (model, 1, "production")
        assert data["window"] == {"start": (start + HOUR).isoformat(), "end": (start + 2 * HOUR).isoformat()}
        assert data["check_id"] == checks[1]["id"]
        drifted = {d["column"]: d for d in data["drifted"]}
        assert set(drifted) == {"amount", "country"}
        assert drifted["amount"]["method"] == "wasserstein" and drifted["amount"]["threshold"] == 0.1
        assert drifted["amount"]["statistic"] > 0.1
        [resolved] = [p for p in payloads if p["type"] == "drift.resolved"]
        assert resolved["data"]["check_id"] == checks[3]["id"] and resolved["data"]["drifted"] == []


@pytest.mark.slow
def test_a_cron_schedule_fires_once_per_slot_with_two_server_processes(database_url: str, tmp_path: Path) -> None:
    with stack(database_url, tmp_path) as made:
        first, second = made.serve(name="replica-a"), made.serve(name="replica-b")
        with client(first, made.tokens.admin) as api:
            model = unique("scheduled")
            model_with_versions(api, model, 1)
            baseline = api.put(
                f"/api/v1/models/{model}/versions/1/monitor/baseline", content=parquet(frame(1000, seed=1)),
                headers=PARQUET, params=BASELINE_OPTIONS,
            )  # fmt: skip
            assert baseline.status_code == 200, baseline.text
            assert api.put(f"/api/v1/models/{model}/aliases/production", json={"version": 1}).status_code == 200
            _send(api, model, frame(300, seed=2))
            spec = 'version: 1\nwindow: 2h\nmin_rows: 100\nschedule: "* * * * *"\n'
            assert api.put(f"/api/v1/models/{model}/monitor", json={"spec": spec}).status_code == 200

            def scheduled() -> list[dict[str, Any]]:
                found = api.get(f"/api/v1/models/{model}/monitor/checks", params={"limit": 1000}).json()
                return [c for c in found if c["origin"] == "schedule"]

            # Every minute each replica tries; the first fire time after the spec was set runs once.
            ran = wait_until(scheduled, timeout=150, interval=0.5, what="a scheduled check")
        with client(second, made.tokens.admin) as api:
            later = api.get(f"/api/v1/models/{model}/monitor/checks", params={"limit": 1000}).json()
    ends = [c["window"]["end"] for c in later if c["origin"] == "schedule"]
    assert len(ends) == len(set(ends))  # never two checks for one fire time
    assert ran[0]["status"] == "ok" and ran[0]["rows"] == 300 and ran[0]["actor"] == "monitor"
