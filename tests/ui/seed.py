"""Data for the UI tests, made through the API as users make it: a model with versions from a run with files,
params, tags and metrics, and aliases moved with reasons."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import httpx

from tests.conftest import bearer, unique

LONG_SERIES = 6_000
"""Points in the run's ``loss`` history: past the UI's 5,000, so the chart gets a downsampled series."""


@dataclass(frozen=True)
class Seeded:
    model: str
    run_id: str
    run_name: str
    experiment_id: int
    files: dict[str, bytes]


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
    run = (
        await client.post(
            "/api/v1/runs/",
            json={"experiment": unique("exp"), "name": "baseline", "tags": {"team": "risk"}},
            headers=h,
        )
    ).json()
    points: list[dict[str, object]] = []
    points += [{"key": "loss", "value": 1.0 / (1 + s) + 0.05 * math.sin(s / 40), "step": s} for s in range(LONG_SERIES)]
    points += [{"key": "accuracy", "value": 0.5 + 0.004 * s, "step": s} for s in range(100)]
    points += [{"key": "system/cpu_utilization_percentage", "value": 30.0 + s % 7, "step": s} for s in range(50)]
    batch = {"params": {"learning_rate": "0.01", "epochs": "3"}, "metrics": points if metrics else []}
    assert (await client.post(f"/api/v1/runs/{run['id']}/log-batch", json=batch, headers=h)).status_code == 200
    files = {"model/weights.bin": b"\x00\x01" * 2048, "model/config.json": b'{"layers": 3}'}
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
    return Seeded(
        model=name,
        run_id=run["id"],
        run_name=run["name"],
        experiment_id=run["experiment_id"],
        files={path.removeprefix("model/"): data for path, data in files.items()},
    )
