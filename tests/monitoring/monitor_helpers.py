"""Data and registry set-up shared by the monitoring tests of the registry side (API, CLI, alerts)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
from sqlalchemy import select

from monitoring.domain import MonitorBucket
from registry.db import Database
from registry.domain.models import ModelVersion, RegisteredModel
from tests.conftest import unique

PARQUET = {"content-type": "application/vnd.apache.parquet"}
CSV = {"content-type": "text/csv"}
JSONL = {"content-type": "application/x-ndjson"}
BASELINE_OPTIONS = {"prediction": "score", "target": "label", "id": "id", "timestamp": "ts"}
HOUR = timedelta(hours=1)


def last_full_hour(now: datetime | None = None) -> datetime:
    """The start of the hour before the current one: rows stamped in it are safely in the past."""
    now = now or datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) - HOUR


def frame(
    rows: int,
    *,
    seed: int,
    shift: float = 0.0,
    weights: tuple[float, float, float] = (0.5, 0.3, 0.2),
    start: datetime | None = None,
    span: timedelta = timedelta(minutes=50),
) -> pa.Table:
    """Rows like a fraud model's traffic: amount (normal, moved by ``shift`` standard deviations), age,
    country (three categories at ``weights``), score (the prediction), label (the target), id and ts (spread
    over ``span`` from ``start``)."""
    rng = np.random.default_rng(seed)
    start = start or last_full_hour()
    offsets = np.sort(rng.uniform(0, span.total_seconds(), rows))
    return pa.table(
        {
            "amount": rng.normal(100.0 + 15.0 * shift, 15.0, rows),
            "age": rng.integers(18, 90, rows),
            "country": rng.choice(["DE", "FR", "IT"], rows, p=list(weights)),
            "score": rng.uniform(0, 1, rows),
            "label": rng.integers(0, 2, rows),
            "id": [f"r{seed}-{i}" for i in range(rows)],
            "ts": pa.array([start + timedelta(seconds=float(s)) for s in offsets], pa.timestamp("us", tz="UTC")),
        }
    )


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def csv(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pyarrow.csv.write_csv(table, sink)
    return sink.getvalue()


def jsonl(table: pa.Table) -> bytes:
    import json

    lines = [json.dumps(row, default=str) for row in table.to_pylist()]
    return ("\n".join(lines) + "\n").encode()


async def new_model(api: httpx.AsyncClient, versions: int = 1) -> str:
    """A new model with ``versions`` versions (one small file each)."""
    name = unique("mon")
    assert (await api.post("/api/v1/models", json={"name": name})).status_code == 201
    for _ in range(versions):
        run = (await api.post("/api/v1/runs", json={})).json()
        assert (await api.put(f"/api/v1/runs/{run['id']}/artifacts/model.bin", content=b"w")).status_code == 201
        created = await api.post(f"/api/v1/models/{name}/versions", json={"run_id": run["id"], "path": "model.bin"})
        assert created.status_code == 201, created.text
    return name


async def set_baseline(api: httpx.AsyncClient, model: str, version: int, table: pa.Table, **params: Any) -> Any:
    response = await api.put(
        f"/api/v1/models/{model}/versions/{version}/monitor/baseline",
        content=parquet(table),
        headers=PARQUET,
        params={**BASELINE_OPTIONS, **params},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def promote(api: httpx.AsyncClient, model: str, version: int, alias: str = "production") -> None:
    moved = await api.put(f"/api/v1/models/{model}/aliases/{alias}", json={"version": version, "reason": "test"})
    assert moved.status_code == 200, moved.text


async def ingest(api: httpx.AsyncClient, model: str, table: pa.Table, **params: Any) -> httpx.Response:
    return await api.post(
        f"/api/v1/models/{model}/monitor/batches",
        content=parquet(table),
        headers=PARQUET,
        params=params or {"alias": "production"},
    )


async def buckets(db: Database, model: str, version: int) -> list[MonitorBucket]:
    async with db.read() as session:
        found = await session.scalars(
            select(MonitorBucket)
            .join(ModelVersion, ModelVersion.id == MonitorBucket.model_version_id)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(RegisteredModel.name == model, ModelVersion.version == version)
            .order_by(MonitorBucket.bucket_start)
        )
        return list(found)
