"""End-to-end flows through the real ASGI app: runs, artifacts, lineage, versions, aliases, events."""

from __future__ import annotations

import hashlib

import httpx

from tests.conftest import Tokens, bearer, unique


async def test_run_artifacts_lineage_and_registration(app_client: httpx.AsyncClient) -> None:
    run = (await app_client.post("/api/v1/runs", json={"experiment": unique("exp"), "name": "train"})).json()
    data_run = (await app_client.post("/api/v1/runs", json={})).json()
    await app_client.put(f"/api/v1/runs/{data_run['id']}/artifacts/data/train.csv", content=b"a,b\n1,2\n")
    dataset = await app_client.post(
        "/api/v1/artifacts",
        json={"name": unique("customers"), "kind": "dataset", "run_id": data_run["id"], "path": "data"},
    )
    assert dataset.status_code == 201, dataset.text
    ds = dataset.json()
    assert ds["version"] == 1 and ds["files"][0]["path"] == "train.csv"
    lineage = await app_client.post(f"/api/v1/runs/{run['id']}/inputs", json={"artifact": ds["name"], "version": 1})
    assert lineage.json()["inputs"] == [{"name": ds["name"], "version": 1, "kind": "dataset", "digest": ds["digest"]}]

    deep = "model/nested/deeper/weights.bin"
    up = await app_client.put(f"/api/v1/runs/{run['id']}/artifacts/{deep}", content=b"\x00weights\xff")
    assert up.status_code == 201 and up.json()["sha256"] == hashlib.sha256(b"\x00weights\xff").hexdigest()
    listing = (await app_client.get(f"/api/v1/runs/{run['id']}/artifacts", params={"prefix": "model"})).json()
    assert [f["path"] for f in listing] == [deep]
    down = await app_client.get(f"/api/v1/runs/{run['id']}/artifacts/{deep}")
    assert down.content == b"\x00weights\xff" and down.headers["x-content-sha256"] == up.json()["sha256"]

    name = unique()
    await app_client.post("/api/v1/models", json={"name": name})
    created = await app_client.post(f"/api/v1/models/{name}/versions", json={"run_id": run["id"], "path": "model"})
    assert created.status_code == 201, created.text
    version = created.json()
    assert version["version"] == 1 and version["run_id"] == run["id"]
    assert version["files"] == [{"path": "nested/deeper/weights.bin", "sha256": up.json()["sha256"], "size": 9}]


async def test_identical_files_are_stored_once(app_client: httpx.AsyncClient, settings: object) -> None:
    from registry.settings import Settings

    assert isinstance(settings, Settings)
    payload = unique("same-bytes").encode() * 1000
    for _ in range(2):
        run = (await app_client.post("/api/v1/runs", json={})).json()
        await app_client.put(f"/api/v1/runs/{run['id']}/artifacts/a.bin", content=payload)
        await app_client.put(f"/api/v1/runs/{run['id']}/artifacts/copy/b.bin", content=payload)
    digest = hashlib.sha256(payload).hexdigest()
    stored = list((settings.data_dir / "blobs").rglob(digest))
    assert len(stored) == 1 and stored[0].read_bytes() == payload


async def test_params_metrics_tags_roundtrip_and_param_conflict(app_client: httpx.AsyncClient) -> None:
    run = (await app_client.post("/api/v1/runs", json={"tags": {"team": "ml"}})).json()
    metrics = [{"key": "loss", "value": 1 / (i + 1), "step": i, "timestamp": 1000 + i} for i in range(3000)]
    ok = await app_client.post(
        f"/api/v1/runs/{run['id']}/log-batch",
        json={"params": {"lr": "0.1"}, "metrics": metrics, "tags": {"stage": "dev"}},
    )
    assert ok.status_code == 200 and ok.json() == {"params": 1, "metrics": 3000, "tags": 1}
    conflict = await app_client.post(f"/api/v1/runs/{run['id']}/log-batch", json={"params": {"lr": "0.2"}})
    assert conflict.status_code == 409 and conflict.json()["code"] == "param_immutable"
    history = (await app_client.get(f"/api/v1/runs/{run['id']}/metrics/loss", params={"limit": 5000})).json()
    assert len(history["items"]) == 3000 and history["next"] is None
    done = (await app_client.patch(f"/api/v1/runs/{run['id']}", json={"status": "FINISHED"})).json()
    assert done["status"] == "FINISHED" and done["end_time"] and done["params"] == {"lr": "0.1"}
    assert done["tags"] == {"team": "ml", "stage": "dev"} and done["metrics"][0]["step"] == 2999


async def test_events_feed_in_commit_order(app_client: httpx.AsyncClient, api_tokens: Tokens) -> None:
    start = (await app_client.get("/api/v1/events", params={"limit": 1000})).json()["items"]
    after = start[-1]["seq"] if start else 0
    name = unique()
    await app_client.post("/api/v1/models", json={"name": name})
    run = (await app_client.post("/api/v1/runs", json={})).json()
    await app_client.put(f"/api/v1/runs/{run['id']}/artifacts/m", content=b"m")
    await app_client.post(f"/api/v1/models/{name}/versions", json={"run_id": run["id"], "path": "m"})
    await app_client.put(f"/api/v1/models/{name}/aliases/staging", json={"version": 1, "reason": "ci"})
    feed = (await app_client.get("/api/v1/events", params={"after": after}, headers=bearer(api_tokens.reader))).json()[
        "items"
    ]
    mine = [e for e in feed if e["model"] == name]
    assert [e["type"] for e in mine] == ["model.created", "model_version.created", "alias.moved"]
    assert mine[2]["data"]["reason"] == "ci" and mine[2]["actor"] == "test-admin"
    seqs = [e["seq"] for e in feed]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_openapi_schema_is_served(app_client: httpx.AsyncClient) -> None:
    schema = (await app_client.get("/schema/openapi.json")).json()
    assert "/api/v1/models/{name}/aliases/{alias}" in schema["paths"]


async def test_sdk_metric_history_follows_pages(live_server: object, api_tokens: Tokens) -> None:
    from registry.client import RegistryClient
    from tests.conftest import LiveServer

    assert isinstance(live_server, LiveServer)
    with RegistryClient(live_server.url, api_tokens.writer) as client:
        run = client.create_run()
        points = [{"key": "loss", "value": float(i), "step": i, "timestamp": i} for i in range(2500)]
        client.log_batch(run["id"], metrics=points)
        history = client.metric_history(run["id"], "loss", page_size=1000)
    assert [p["step"] for p in history] == list(range(2500))
