"""Data for the UI tests, made through the API as users make it: a model with versions from a run with files,
params, tags and metrics, and aliases moved with reasons."""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import bearer, unique

LONG_SERIES = 6_000
"""Points in the run's ``loss`` history: past the UI's 5,000, so the chart gets a downsampled series."""
T0 = 1_767_225_600_000
"""When the seeded ``loss`` history starts (ms since the epoch); its points are a second apart."""
GATE_SPEC = """
version: 1
defaults: {alpha: 0.05, on_inconclusive: fail}
gates:
  - {id: accuracy, kind: proportion, outcome: correct, threshold: 0.95}
  - {id: near-perfect, kind: proportion, outcome: correct, threshold: 0.994}
"""
"""Two gates on 4,000 examples with 20 wrong (accuracy 0.995): ``accuracy`` passes (the interval clears 0.95),
``near-perfect`` is inconclusive (its interval straddles 0.994), so the run's verdict is ``fail``."""
DIFF = b"""diff --git a/train.py b/train.py
index 3b18e51..a1c2f4e 100644
--- a/train.py
+++ b/train.py
@@ -1,4 +1,4 @@
 import torch
--- a removed line that looks like a header
-lr = 0.1
+lr = 0.01
 epochs = 3
"""


def loss_at(step: int) -> float:
    """The seeded run's ``loss`` at ``step``: falling, with a wave on it (peaks and dips a chart must keep)."""
    return 1.0 / (1 + step) + 0.05 * math.sin(step / 40)


def eval_parquet(n: int, wrong: int) -> bytes:
    """An evaluation table as the gates read it: ``id``, ``label``, ``prediction`` with ``wrong`` mistakes."""
    labels = [f"c{i % 3}" for i in range(n)]
    table = pa.table(
        {"id": list(range(n)), "label": labels, "prediction": [("x" if i < wrong else x) for i, x in enumerate(labels)]}
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@dataclass(frozen=True)
class Seeded:
    model: str
    run_id: str
    run_name: str
    experiment_id: int
    files: dict[str, bytes]
    gate_run_id: int


async def upload_blob(client: httpx.AsyncClient, token: str, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    response = await client.put(f"/api/v1/blobs/{digest}", content=data, headers=bearer(token))
    assert response.status_code == 201, response.text
    return {"sha256": digest, "size": len(data)}


async def seed(client: httpx.AsyncClient, admin: str, *, versions: int = 3, metrics: bool = True) -> Seeded:
    """A model with ``versions`` versions (the last from a run with metrics unless ``metrics`` is false),
    ``production`` at v1 and ``staging`` at v2."""
    h = bearer(admin)
    name = unique("fraud")
    diff = await upload_blob(client, admin, DIFF)
    run = (
        await client.post(
            "/api/v1/runs/",
            json={
                "experiment": unique("exp"),
                "name": "baseline",
                "tags": {"team": "risk"},
                "git": {"commit": "9f2c1e0" + "a" * 33, "branch": "main", "dirty": True, "diff_sha256": diff["sha256"]},
                "environment": {"python": "3.12.7", "platform": "Linux-6.1-x86_64", "packages": {"numpy": "2.1.3"}},
            },
            headers=h,
        )
    ).json()
    points: list[dict[str, object]] = []
    points += [{"key": "loss", "value": loss_at(s), "step": s, "timestamp": T0 + 1000 * s} for s in range(LONG_SERIES)]
    points += [{"key": "accuracy", "value": 0.5 + 0.004 * s, "step": s} for s in range(100)]
    points += [{"key": "system/cpu_utilization_percentage", "value": 30.0 + s % 7, "step": s} for s in range(50)]
    batch = {"params": {"learning_rate": "0.01", "epochs": "3"}, "metrics": points if metrics else []}
    assert (await client.post(f"/api/v1/runs/{run['id']}/log-batch", json=batch, headers=h)).status_code == 200
    dataset = await upload_blob(client, admin, b"amount,label\n12.5,0\n99.0,1\n")
    made = await client.post(
        "/api/v1/artifacts/",
        json={"name": f"{name}-train", "kind": "dataset", "files": [{"path": "train.csv", **dataset}]},
        headers=h,
    )
    assert made.status_code == 201, made.text
    used = await client.post(
        f"/api/v1/runs/{run['id']}/inputs",
        json={"artifact": f"{name}-train", "version": 1, "context": "training"},
        headers=h,
    )
    assert used.status_code == 200, used.text
    files = {
        "model/weights.bin": b"\x00\x01" * 2048,
        "model/config.json": b'{"layers": 3}',
        "model/eval/results.parquet": eval_parquet(4000, 20),
    }
    for path, data in files.items():
        response = await client.put(f"/api/v1/runs/{run['id']}/artifacts/{path}", content=data, headers=h)
        assert response.status_code == 201, response.text
    for number in range(1, versions + 1):
        body: dict[str, object]
        if number == versions:
            body = {"run_id": run["id"], "path": "model", "description": "trained on the March data"}
        else:
            blob = await upload_blob(client, admin, f"{name} v{number}".encode())
            body = {"files": [{"path": "model.bin", **blob}]}
        response = await client.post(f"/api/v1/models/{name}/versions", json=body, headers=h)
        if response.status_code == 404:
            await client.post("/api/v1/models/", json={"name": name, "description": "fraud scores"}, headers=h)
            response = await client.post(f"/api/v1/models/{name}/versions", json=body, headers=h)
        assert response.status_code == 201, response.text
    for alias, number in (("production", 1), ("staging", 2)):
        response = await client.put(
            f"/api/v1/models/{name}/aliases/{alias}",
            json={"version": number, "reason": f"first {alias} release"},
            headers=h,
        )
        assert response.status_code == 200, response.text
    gated = await client.post(
        f"/api/v1/models/{name}/versions/{versions}/gate-runs", json={"spec": GATE_SPEC, "record": True}, headers=h
    )
    assert gated.status_code == 200, gated.text
    return Seeded(
        model=name,
        run_id=run["id"],
        run_name=run["name"],
        experiment_id=run["experiment_id"],
        files={path.removeprefix("model/"): data for path, data in files.items()},
        gate_run_id=gated.json()["id"],
    )
