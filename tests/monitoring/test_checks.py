"""Monitor specs, drift checks, alert events and scheduled checks through the real ASGI app, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from automations.domain import SchedulerSlot
from monitoring import jobs
from monitoring.domain import MonitorCheck
from registry.db import Database
from registry.domain.models import RegisteredModel
from registry.settings import Settings
from tests.conftest import Tokens, bearer
from tests.monitoring.monitor_helpers import HOUR, frame, ingest, last_full_hour, new_model, promote, set_baseline

SPEC = """\
version: 1
window: 1h
min_rows: 200
alias: production
"""
DRIFTED = {"shift": 2.0, "weights": (0.2, 0.3, 0.5)}


async def _set_spec(api: httpx.AsyncClient, model: str, text: str = SPEC) -> httpx.Response:
    return await api.put(f"/api/v1/models/{model}/monitor", json={"spec": text})


async def _check(api: httpx.AsyncClient, model: str, **params: Any) -> httpx.Response:
    return await api.post(f"/api/v1/models/{model}/monitor/checks", params={"alias": "production", **params})


async def _events(api: httpx.AsyncClient, model: str) -> list[dict[str, Any]]:
    found = (await api.get("/api/v1/events", params={"model": model, "limit": 1000})).json()["items"]
    return [e for e in found if e["type"] in ("drift.detected", "drift.resolved")]


async def _monitored(api: httpx.AsyncClient, versions: int = 1) -> str:
    """A model whose versions have a 2,000-row baseline, production on v1, and a spec."""
    model = await new_model(api, versions=versions)
    for version in range(1, versions + 1):
        await set_baseline(api, model, version, frame(2000, seed=version))
    await promote(api, model, 1)
    assert (await _set_spec(api, model)).status_code == 200
    return model


async def test_the_spec_is_validated_and_kept_verbatim(app_client: httpx.AsyncClient, api_tokens: Tokens) -> None:
    model = await new_model(app_client)
    missing = await app_client.get(f"/api/v1/models/{model}/monitor")
    assert missing.status_code == 404 and missing.json()["code"] == "no_spec"
    made = await _set_spec(app_client, model)
    assert made.status_code == 200, made.text
    assert made.json()["spec"] == SPEC and len(made.json()["digest"]) == 64
    assert (await app_client.get(f"/api/v1/models/{model}/monitor")).json() == made.json()

    for text, key in (
        (SPEC + "alert_after: 3\n", "alert_after"),
        (SPEC + "schedule: every hour\n", "schedule"),
        (SPEC.replace("min_rows: 200", "min_rows: lots"), "min_rows"),
        (SPEC + "columns:\n  amount: {method: magic}\n", "method"),
    ):
        refused = await _set_spec(app_client, model, text)
        assert refused.status_code == 400, text
        assert key in refused.json()["detail"] and refused.json()["code"] == "invalid_spec", refused.json()
    assert (await app_client.get(f"/api/v1/models/{model}/monitor")).json()["spec"] == SPEC  # nothing stored

    as_writer = await app_client.put(
        f"/api/v1/models/{model}/monitor", json={"spec": SPEC}, headers=bearer(api_tokens.writer)
    )
    assert as_writer.status_code == 403


async def test_checks_compare_the_window_with_the_baseline(app_client: httpx.AsyncClient) -> None:
    model = await _monitored(app_client)
    hour = last_full_hour() - HOUR
    assert (await ingest(app_client, model, frame(1000, seed=11, start=hour))).status_code == 200
    assert (await ingest(app_client, model, frame(1000, seed=12, start=hour + HOUR, **DRIFTED))).status_code == 200

    calm = await _check(app_client, model, end=(hour + HOUR).isoformat())
    assert calm.status_code == 200, calm.text
    body = calm.json()
    assert body["status"] == "ok" and body["drift_detected"] is False and body["drifted"] == []
    assert (body["model"], body["version"], body["alias"]) == (model, 1, "production")
    assert body["window"] == {"start": hour.isoformat(), "end": (hour + HOUR).isoformat()}
    assert (body["rows"], body["reference_rows"]) == (1000, 2000)
    # Above 1,000 reference rows: Wasserstein (normed) and Jensen-Shannon at 0.1, Evidently's defaults.
    methods = {c["column"]: (c["method"], c["threshold"]) for c in body["columns"]}
    assert methods == {
        "amount": ("wasserstein", 0.1),
        "age": ("wasserstein", 0.1),
        "country": ("jensenshannon", 0.1),
        "score": ("wasserstein", 0.1),
    }
    assert set(body["columns"][0]) == {"column", "type", "method", "statistic", "threshold", "drifted"}

    drift = (await _check(app_client, model, end=(hour + 2 * HOUR).isoformat())).json()
    assert drift["status"] == "drift" and drift["drift_detected"] is True and drift["rows"] == 1000
    assert set(drift["drifted"]) == {"amount", "country"}

    both = (await _check(app_client, model, window="2h", end=(hour + 2 * HOUR).isoformat())).json()
    assert both["rows"] == 2000 and both["window"]["start"] == hour.isoformat()

    listed = (await app_client.get(f"/api/v1/models/{model}/monitor/checks")).json()
    assert [c["id"] for c in listed] == [both["id"], drift["id"], body["id"]]
    one = await app_client.get(f"/api/v1/models/{model}/monitor/checks/{drift['id']}")
    assert one.status_code == 200 and one.json() == drift
    status = (await app_client.get(f"/api/v1/models/{model}/monitor/status")).json()
    assert [(c["alias"], c["id"]) for c in status] == [("production", both["id"])]


async def test_per_column_rules_of_the_spec_apply(app_client: httpx.AsyncClient) -> None:
    model = await _monitored(app_client)
    spec = SPEC + "columns:\n  amount: {method: psi, threshold: 0.2}\nalert_on: [amount]\n"
    assert (await _set_spec(app_client, model, spec)).status_code == 200
    hour = last_full_hour()
    await ingest(app_client, model, frame(600, seed=3, start=hour, shift=2.0))
    found = (await _check(app_client, model, end=(hour + HOUR).isoformat())).json()
    [amount] = [c for c in found["columns"] if c["column"] == "amount"]
    assert (amount["method"], amount["threshold"], amount["drifted"]) == ("psi", 0.2, True)
    assert found["drift_detected"] is True  # one of four columns, but it is listed in alert_on


async def test_too_few_rows_are_insufficient_data(app_client: httpx.AsyncClient) -> None:
    model = await _monitored(app_client)
    hour = last_full_hour()
    await ingest(app_client, model, frame(150, seed=3, start=hour))
    found = (await _check(app_client, model, end=(hour + HOUR).isoformat())).json()
    assert found["status"] == "insufficient_data" and found["rows"] == 150 and found["columns"] == []
    empty = (await _check(app_client, model, end=(hour - 5 * HOUR).isoformat())).json()
    assert empty["status"] == "insufficient_data" and empty["rows"] == 0


async def test_checks_follow_promotions_and_never_mix_versions(app_client: httpx.AsyncClient) -> None:
    model = await _monitored(app_client, versions=2)
    hour = last_full_hour()
    await ingest(app_client, model, frame(800, seed=5, start=hour, **DRIFTED))  # served by v1, drifting
    await promote(app_client, model, 2)
    await ingest(app_client, model, frame(600, seed=6, start=hour))  # served by v2, like its baseline
    found = (await _check(app_client, model, end=(hour + HOUR).isoformat())).json()
    assert (found["version"], found["rows"], found["status"]) == (2, 600, "ok")
    by_number = await app_client.post(
        f"/api/v1/models/{model}/monitor/checks", params={"version": 1, "end": (hour + HOUR).isoformat()}
    )
    assert (by_number.json()["version"], by_number.json()["rows"]) == (1, 800)
    assert by_number.json()["status"] == "drift" and by_number.json()["alias"] is None


async def test_alerts_are_written_on_transitions_only(app_client: httpx.AsyncClient) -> None:
    model = await _monitored(app_client)
    start = last_full_hour() - 4 * HOUR
    plan = [None, DRIFTED, DRIFTED, None, "few"]  # calm, drift, drift again, calm, too few rows
    for i, kind in enumerate(plan):
        rows = 100 if kind == "few" else 500
        extra = kind if isinstance(kind, dict) else {}
        await ingest(app_client, model, frame(rows, seed=30 + i, start=start + i * HOUR, **extra))
    alerts = []
    for i in range(len(plan)):
        found = (await _check(app_client, model, end=(start + (i + 1) * HOUR).isoformat())).json()
        alerts.append(found["alert"])
    assert alerts == [None, "drift.detected", None, "drift.resolved", None]

    detected, resolved = await _events(app_client, model)
    assert (detected["type"], resolved["type"]) == ("drift.detected", "drift.resolved")
    data = detected["data"]
    assert (data["model"], data["version"], data["alias"]) == (model, 1, "production")
    assert data["window"] == {"start": (start + HOUR).isoformat(), "end": (start + 2 * HOUR).isoformat()}
    assert {d["column"] for d in data["drifted"]} == {"amount", "country"}
    assert all(d["statistic"] >= d["threshold"] == 0.1 for d in data["drifted"])
    assert data["check_url"] == f"/api/v1/models/{model}/monitor/checks/{data['check_id']}"
    assert resolved["data"]["drifted"] == [] and resolved["data"]["previous_check_id"] > data["check_id"]


async def test_since_last_check_starts_where_the_last_check_ended(app_client: httpx.AsyncClient) -> None:
    model = await _monitored(app_client)
    start = last_full_hour() - 3 * HOUR
    for i in range(3):
        await ingest(app_client, model, frame(300, seed=40 + i, start=start + i * HOUR))
    first = (await _check(app_client, model, window="since last check", end=(start + HOUR).isoformat())).json()
    assert first["rows"] == 300 and first["window"]["start"] == start.isoformat()  # a first check reads all
    second = (await _check(app_client, model, window="since last check", end=(start + 3 * HOUR).isoformat())).json()
    assert second["rows"] == 600 and second["window"]["start"] == (start + HOUR).isoformat()


@pytest.mark.parametrize(
    ("model_suffix", "params", "status", "code"),
    [
        ("-nope", {"alias": "production"}, 404, None),
        ("", {"alias": "staging"}, 404, "alias_not_found"),
        ("", {"version": 9}, 404, None),
        ("", {"alias": "production", "window": "fortnight"}, 400, None),
        ("", {"alias": "production", "end": "soon"}, 400, None),
        ("", {}, 400, None),
    ],
)
async def test_bad_check_requests(
    app_client: httpx.AsyncClient, model_suffix: str, params: dict[str, Any], status: int, code: str | None
) -> None:
    model = await _monitored(app_client)
    found = await app_client.post(f"/api/v1/models/{model}{model_suffix}/monitor/checks", params=params)
    assert found.status_code == status, found.text
    if code:
        assert found.json()["code"] == code


async def test_a_check_of_a_version_without_baseline_is_404(app_client: httpx.AsyncClient) -> None:
    model = await new_model(app_client)
    await promote(app_client, model, 1)
    found = await _check(app_client, model)
    assert found.status_code == 404 and found.json()["code"] == "no_baseline"


async def test_scheduled_checks_run_once_per_fire_time_across_replicas(
    app_client: httpx.AsyncClient, db: Database, database_url: str, settings: Settings
) -> None:
    model = await _monitored(app_client)
    assert (await _set_spec(app_client, model, SPEC + 'schedule: "0 * * * *"\n')).status_code == 200
    # A fire time an hour back: the live server's own scheduler (same database) never looks that far.
    hour = last_full_hour() - HOUR
    await ingest(app_client, model, frame(400, seed=7, start=hour))
    fire = hour + HOUR
    replicas = [Database(database_url), Database(database_url)]
    try:
        names = [settings.model_copy(update={"instance_name": f"replica-{i}"}) for i in range(2)]
        moments = [fire + timedelta(seconds=20), fire + timedelta(seconds=25)]
        runs = zip(replicas, names, moments, strict=True)
        await asyncio.gather(*(jobs.run_scheduled_checks(r, s, now=m) for r, s, m in runs))
        # A later scan within the look-back sees the same fire time: it has run, so nothing happens.
        await jobs.run_scheduled_checks(replicas[0], names[0], now=fire + timedelta(minutes=3))
    finally:
        for replica in replicas:
            await replica.dispose()
    async with db.read() as session:
        ran = list(
            await session.scalars(
                select(MonitorCheck)
                .join(RegisteredModel, RegisteredModel.id == MonitorCheck.model_id)
                .where(RegisteredModel.name == model)
            )
        )
    assert len(ran) == 1
    [check] = ran
    assert (check.origin, check.actor, check.status, check.rows) == ("schedule", "monitor", "ok", 400)
    assert (check.window_start, check.window_end) == (hour, fire)
    async with db.read() as session:
        job = f"monitor.check:{check.model_id}"
        [slot] = await session.scalars(select(SchedulerSlot).where(SchedulerSlot.job == job))
    assert slot.slot_start == fire and slot.claimed_by in ("replica-0", "replica-1")
    assert slot.outcome == f"{model}@production v1: check #{check.id} ok"


def test_latest_fire_time() -> None:
    from datetime import UTC, datetime

    now = datetime(2024, 5, 1, 12, 3, 10, tzinfo=UTC)
    assert jobs.latest_fire("0 * * * *", now) == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert jobs.latest_fire("*/2 * * * *", now) == datetime(2024, 5, 1, 12, 2, tzinfo=UTC)
    assert jobs.latest_fire("30 * * * *", now) is None  # the last one is older than the look-back
