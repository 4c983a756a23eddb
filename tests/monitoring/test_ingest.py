"""Baselines and production batches through the real ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pyarrow as pa
import pytest

from monitoring.profile import CategoricalProfile, NumericProfile, TableProfile
from registry.api.app import create_app
from registry.db import Database
from registry.settings import Settings
from registry.storage.local import LocalBlobStore
from tests.conftest import Tokens, bearer
from tests.monitoring.monitor_helpers import (
    CSV,
    HOUR,
    JSONL,
    PARQUET,
    buckets,
    csv,
    frame,
    ingest,
    jsonl,
    last_full_hour,
    new_model,
    parquet,
    promote,
    set_baseline,
)


async def test_a_baseline_is_profiled_once_and_shown(app_client: httpx.AsyncClient) -> None:
    model = await new_model(app_client, versions=2)
    reference = frame(2000, seed=1)
    made = await set_baseline(app_client, model, 1, reference)
    assert made["rows"] == 2000 and made["source"] == "upload" and len(made["digest"]) == 64
    schema = made["schema"]
    # The role columns are not monitored; the prediction is; kinds follow the same rule as for production.
    assert {c["name"]: c["kind"] for c in schema["columns"]} == {
        "amount": "numerical",
        "age": "numerical",
        "country": "categorical",
        "score": "numerical",
    }
    assert (schema["prediction"], schema["target"], schema["id"], schema["timestamp"]) == ("score", "label", "id", "ts")
    shown = await app_client.get(f"/api/v1/models/{model}/versions/1/monitor/baseline")
    assert shown.status_code == 200 and shown.json() == made

    again = await set_baseline(app_client, model, 1, reference)  # the same reference again changes nothing
    assert again == made
    other = await app_client.put(
        f"/api/v1/models/{model}/versions/1/monitor/baseline", content=parquet(frame(2000, seed=2)), headers=PARQUET
    )
    assert other.status_code == 409 and other.json()["code"] == "baseline_exists"

    # CSV works too, with the options stated explicitly.
    as_csv = await app_client.put(
        f"/api/v1/models/{model}/versions/2/monitor/baseline",
        content=csv(reference.drop_columns(["ts"])),
        headers=CSV,
        params={"columns": "amount,country", "categorical": "country"},
    )
    assert as_csv.status_code == 200, as_csv.text
    assert [c["name"] for c in as_csv.json()["schema"]["columns"]] == ["amount", "country"]


async def test_a_version_without_a_baseline_is_a_404(app_client: httpx.AsyncClient) -> None:
    model = await new_model(app_client)
    shown = await app_client.get(f"/api/v1/models/{model}/versions/1/monitor/baseline")
    assert shown.status_code == 404 and shown.json()["code"] == "no_baseline"
    sent = await ingest(app_client, model, frame(100, seed=1), version=1)
    assert sent.status_code == 404 and sent.json()["code"] == "no_baseline"


async def test_a_version_without_a_baseline_falls_back_to_the_dataset_its_run_consumed(
    app_client: httpx.AsyncClient, db: Database
) -> None:
    model = await new_model(app_client)
    data_run = (await app_client.post("/api/v1/runs", json={})).json()
    reference = frame(1500, seed=3).drop_columns(["id", "label"])
    await app_client.put(f"/api/v1/runs/{data_run['id']}/artifacts/data/train.parquet", content=parquet(reference))
    dataset = await app_client.post(
        "/api/v1/artifacts", json={"name": f"{model}-train", "run_id": data_run["id"], "path": "data"}
    )
    assert dataset.status_code == 201, dataset.text
    run = (await app_client.post("/api/v1/runs", json={})).json()
    await app_client.post(f"/api/v1/runs/{run['id']}/inputs", json={"artifact": f"{model}-train", "version": 1})
    await app_client.put(f"/api/v1/runs/{run['id']}/artifacts/model.bin", content=b"w")
    await app_client.post(f"/api/v1/models/{model}/versions", json={"run_id": run["id"], "path": "model.bin"})

    hour = last_full_hour()
    sent = await ingest(app_client, model, frame(300, seed=4, start=hour).drop_columns(["id", "label"]), version=2)
    assert sent.status_code == 200, sent.text
    assert sent.json()["buckets"] == [{"start": hour.isoformat(), "rows": 300}]
    shown = (await app_client.get(f"/api/v1/models/{model}/versions/2/monitor/baseline")).json()
    assert shown["source"] == f"artifact:{model}-train:1" and shown["rows"] == 1500
    # Nobody named the roles: the column of times is the timestamp, the rest are features.
    assert shown["schema"]["timestamp"] == "ts"
    assert [c["name"] for c in shown["schema"]["columns"]] == ["amount", "age", "country", "score"]


async def test_a_baseline_from_a_dataset_artifact_version(app_client: httpx.AsyncClient) -> None:
    model = await new_model(app_client)
    data_run = (await app_client.post("/api/v1/runs", json={})).json()
    await app_client.put(f"/api/v1/runs/{data_run['id']}/artifacts/ref.csv", content=csv(frame(800, seed=5)))
    await app_client.post("/api/v1/artifacts", json={"name": f"{model}-ref", "run_id": data_run["id"], "path": ""})
    made = await app_client.put(
        f"/api/v1/models/{model}/versions/1/monitor/baseline",
        params={"artifact": f"{model}-ref:1", "target": "label", "id": "id", "timestamp": "ts"},
    )
    assert made.status_code == 200, made.text
    assert made.json()["source"] == f"artifact:{model}-ref:1" and made.json()["rows"] == 800


def _exact(profile: TableProfile, rows: pa.Table) -> None:
    """The merged profile's exact statistics equal those of the raw rows."""
    assert profile.rows == rows.num_rows
    amount = profile.columns["amount"]
    assert isinstance(amount, NumericProfile)
    raw = rows.column("amount").to_numpy()
    assert amount.count == raw.size and amount.min == raw.min() and amount.max == raw.max()
    assert amount.mean == pytest.approx(raw.mean(), rel=1e-12)
    assert amount.variance() == pytest.approx(raw.var(), rel=1e-9)
    country = profile.columns["country"]
    assert isinstance(country, CategoricalProfile)
    values, counts = np.unique(rows.column("country").to_numpy(zero_copy_only=False), return_counts=True)
    assert country.counts == dict(zip(values.tolist(), counts.tolist(), strict=True))


async def test_batches_are_bucketed_by_hour_and_merge(app_client: httpx.AsyncClient, db: Database) -> None:
    model = await new_model(app_client)
    await set_baseline(app_client, model, 1, frame(2000, seed=1))
    await promote(app_client, model, 1)
    start = last_full_hour() - HOUR
    first = frame(900, seed=2, start=start, span=timedelta(minutes=110))
    second = frame(700, seed=3, start=start, span=timedelta(minutes=110))
    for batch in (first, second):
        sent = await ingest(app_client, model, batch)
        assert sent.status_code == 200, sent.text
    body = sent.json()
    assert body["model"] == model and body["version"] == 1 and body["alias"] == "production" and body["rows"] == 700
    assert [b["start"] for b in body["buckets"]] == [start.isoformat(), (start + HOUR).isoformat()]

    stored = await buckets(db, model, 1)
    assert [b.bucket_start for b in stored] == [start, start + HOUR]
    assert [b.batches for b in stored] == [2, 2] and sum(b.rows for b in stored) == 1600
    both = pa.concat_tables([first, second])
    stamps = both.column("ts").cast(pa.int64()).to_numpy() // 3_600_000_000
    for bucket in stored:
        hour = int(bucket.bucket_start.timestamp()) // 3600
        _exact(TableProfile.from_bytes(bucket.profile), both.filter(pa.array(stamps == hour)))


async def test_concurrent_batches_into_one_bucket_lose_nothing(app_client: httpx.AsyncClient, db: Database) -> None:
    model = await new_model(app_client)
    await set_baseline(app_client, model, 1, frame(1000, seed=1))
    hour = last_full_hour()
    batches = [frame(200, seed=10 + i, start=hour) for i in range(6)]
    sent = await asyncio.gather(*(ingest(app_client, model, b, version=1) for b in batches))
    assert [s.status_code for s in sent] == [200] * 6
    [bucket] = await buckets(db, model, 1)
    assert bucket.rows == 1200 and bucket.batches == 6
    _exact(TableProfile.from_bytes(bucket.profile), pa.concat_tables(batches))


async def test_the_alias_is_resolved_at_ingest_time(app_client: httpx.AsyncClient, db: Database) -> None:
    model = await new_model(app_client, versions=2)
    for version in (1, 2):
        await set_baseline(app_client, model, version, frame(1000, seed=version))
    await promote(app_client, model, 1)
    assert (await ingest(app_client, model, frame(300, seed=5))).json()["version"] == 1
    await promote(app_client, model, 2)
    assert (await ingest(app_client, model, frame(400, seed=6))).json()["version"] == 2
    assert [b.rows for b in await buckets(db, model, 1)] == [300]
    assert [b.rows for b in await buckets(db, model, 2)] == [400]


async def test_csv_and_json_lines_batches_and_the_at_parameter(app_client: httpx.AsyncClient, db: Database) -> None:
    model = await new_model(app_client)
    await set_baseline(app_client, model, 1, frame(1000, seed=1))
    when = last_full_hour() - 5 * HOUR
    untimed = frame(100, seed=2).drop_columns(["ts"])
    for content, headers in ((csv(untimed), CSV), (jsonl(untimed), JSONL)):
        sent = await app_client.post(
            f"/api/v1/models/{model}/monitor/batches",
            content=content,
            headers=headers,
            params={"version": 1, "at": (when + timedelta(minutes=7)).isoformat()},
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["buckets"] == [{"start": when.isoformat(), "rows": 100}]
    # Timestamps as ISO text (JSON lines carry no types) are bucketed by their own hour.
    timed = await app_client.post(
        f"/api/v1/models/{model}/monitor/batches", content=jsonl(frame(50, seed=3, start=when + 2 * HOUR)),
        headers=JSONL,
        params={"version": 1},
    )  # fmt: skip
    assert timed.status_code == 200, timed.text
    assert timed.json()["buckets"] == [{"start": (when + 2 * HOUR).isoformat(), "rows": 50}]
    assert [b.rows for b in await buckets(db, model, 1)] == [200, 50]


async def test_json_lines_batch_joins_an_hour_a_parquet_batch_started(
    app_client: httpx.AsyncClient, db: Database
) -> None:
    """The hour's row sample holds the Parquet batch's timestamps as timestamps; the JSON-lines batch brings them
    as text. Both land in the one bucket (a merge failure here was a 500)."""
    model = await new_model(app_client)
    await set_baseline(app_client, model, 1, frame(1000, seed=1))
    when = last_full_hour() - 3 * HOUR
    for content, headers in (
        (parquet(frame(60, seed=4, start=when)), PARQUET),
        (jsonl(frame(40, seed=5, start=when)), JSONL),
    ):
        sent = await app_client.post(
            f"/api/v1/models/{model}/monitor/batches", content=content, headers=headers, params={"version": 1}
        )
        assert sent.status_code == 200, sent.text
    assert [b.rows for b in await buckets(db, model, 1)] == [100]


def _future(rows: int) -> pa.Table:
    table = frame(rows, seed=9)
    stamps = [datetime.now(UTC) - timedelta(minutes=1)] * rows
    stamps[3] = datetime.now(UTC) + timedelta(hours=2)
    return table.set_column(table.column_names.index("ts"), "ts", pa.array(stamps, pa.timestamp("us", tz="UTC")))


BAD_BATCHES = [
    pytest.param(parquet(frame(50, seed=1).drop_columns(["amount"])), PARQUET, {}, "amount", id="missing-column"),
    pytest.param(
        parquet(frame(50, seed=1).append_column("extra", pa.array([1.0] * 50))), PARQUET, {}, "extra", id="extra-column"
    ),
    pytest.param(
        parquet(frame(50, seed=1).set_column(0, "amount", pa.array(["x"] * 50))),
        PARQUET,
        {},
        "amount",
        id="type-change",
    ),
    pytest.param(b"", PARQUET, {}, None, id="empty-body"),
    pytest.param(csv(frame(0, seed=1)), CSV, {}, None, id="header-only-csv"),
    pytest.param(b"not parquet at all", PARQUET, {}, None, id="unreadable"),
    pytest.param(parquet(frame(50, seed=1)), {"content-type": "application/json"}, {}, "content-type", id="json"),
    pytest.param(
        parquet(frame(50, seed=1)), {"content-type": "application/octet-stream"}, {}, "content-type", id="oct"
    ),
    pytest.param(parquet(_future(50)), PARQUET, {}, "ts", id="future-timestamp"),
    pytest.param(
        parquet(frame(50, seed=1).drop_columns(["ts"])),
        PARQUET,
        {"at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
        "at",
        id="future-at",
    ),
    pytest.param(parquet(frame(50, seed=1)), PARQUET, {"at": "yesterday"}, "at", id="bad-at"),
]


@pytest.mark.parametrize(("content", "headers", "params", "field"), BAD_BATCHES)
async def test_bad_batches_are_400_naming_the_column_and_store_nothing(
    app_client: httpx.AsyncClient,
    db: Database,
    content: bytes,
    headers: dict[str, str],
    params: dict[str, str],
    field: str | None,
) -> None:
    model = await new_model(app_client)
    await set_baseline(app_client, model, 1, frame(500, seed=1))
    refused = await app_client.post(
        f"/api/v1/models/{model}/monitor/batches", content=content, headers=headers, params={"version": 1, **params}
    )
    assert refused.status_code == 400, refused.text
    problem = refused.json()
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert problem.get("field") == field
    if field not in (None, "content-type"):
        assert field in problem["detail"]
    if field == "ts":
        assert problem["row"] == 3 and "row 3" in problem["detail"]
    assert await buckets(db, model, 1) == []


async def test_unknown_model_alias_and_version_are_404(app_client: httpx.AsyncClient) -> None:
    model = await new_model(app_client)
    await set_baseline(app_client, model, 1, frame(500, seed=1))
    body = parquet(frame(50, seed=1))
    for target, params in ((model, {"alias": "production"}), (model, {"version": 7}), ("nope-model", {"version": 1})):
        sent = await app_client.post(f"/api/v1/models/{target}/monitor/batches", content=body, headers=PARQUET,
                                     params=params)  # fmt: skip
        assert sent.status_code == 404, sent.text
    both = await app_client.post(
        f"/api/v1/models/{model}/monitor/batches", content=body, headers=PARQUET,
        params={"alias": "production", "version": 1},
    )  # fmt: skip
    assert both.status_code == 400


async def test_oversize_batches_are_413_and_store_nothing(db: Database, settings: Settings, api_tokens: Tokens) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 20_000})
    app = create_app(small, db=db, store=LocalBlobStore(settings.data_dir / "blobs"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://registry", headers=bearer(api_tokens.admin)
    ) as api:
        model = await new_model(api)
        await set_baseline(api, model, 1, frame(100, seed=1))
        refused = await ingest(api, model, frame(5000, seed=2), version=1)
        assert refused.status_code == 413 and refused.json()["code"] == "payload_too_large"
        assert await buckets(db, model, 1) == []


async def test_readers_cannot_send_data(app_client: httpx.AsyncClient, api_tokens: Tokens) -> None:
    model = await new_model(app_client)
    await set_baseline(app_client, model, 1, frame(300, seed=1))
    refused = await app_client.post(
        f"/api/v1/models/{model}/monitor/batches", content=parquet(frame(10, seed=2)),
        headers={**PARQUET, **bearer(api_tokens.reader)}, params={"version": 1},
    )  # fmt: skip
    assert refused.status_code == 403
    denied = await app_client.put(
        f"/api/v1/models/{model}/versions/1/monitor/baseline", content=parquet(frame(10, seed=2)),
        headers={**PARQUET, **bearer(api_tokens.reader)},
    )  # fmt: skip
    assert denied.status_code == 403


async def test_each_bucket_keeps_a_bounded_sample_of_its_rows(
    app_client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    from monitoring.ingest import SAMPLE_ROWS, read_sample

    model = await new_model(app_client)
    await set_baseline(app_client, model, 1, frame(1000, seed=1))
    hour = last_full_hour()
    sent = [frame(700, seed=20 + i, start=hour) for i in range(3)]
    for batch in sent:
        assert (await ingest(app_client, model, batch, version=1)).status_code == 200
    [bucket] = await buckets(db, model, 1)
    assert bucket.rows == 2100 and bucket.sample_digest is not None
    sample = await read_sample(LocalBlobStore(settings.data_dir / "blobs"), bucket.sample_digest)
    assert sample.num_rows == SAMPLE_ROWS
    # Rows of every batch, and only rows that were sent (conformed: monitored columns first, then the roles).
    ids = set(sample.column("id").to_pylist())
    assert ids <= {i for b in sent for i in b.column("id").to_pylist()}
    assert all(ids & set(b.column("id").to_pylist()) for b in sent)
    assert sample.column_names[:4] == ["amount", "age", "country", "score"]
