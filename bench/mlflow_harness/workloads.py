# ruff: noqa: RUF002
"""Seeding through the MLflow REST API and the benchmarked workloads (identical for both servers).

Seed (per server, unique names so a reused server works too):
* experiment ``bench-<tag>``;
* run ``getrun`` with ``points`` metric points (``metric_keys`` keys × ``points // metric_keys`` steps, one
  log-batch), 10 params and 5 tags, plus a file ``model/MLmodel`` uploaded through the proxied-artifact route;
* one run per log-batch connection (up to the highest concurrency), so concurrent log-batch calls write to
  different runs, as concurrent training jobs do;
* registered model ``<tag>-search`` with ``versions`` versions (source ``runs:/<run>/model``), created one by
  one so both servers hold exactly versions 1..N; alias ``champion`` → version 1;
* registered model ``<tag>-create``, the target of the create-version workload (so the search model stays
  at exactly N versions whatever the create throughput was).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .httpload import Client, HttpFailure, Request, RequestBuilder, describe

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
MLMODEL = b"artifact_path: model\nflavors:\n  python_function:\n    loader_module: bench\nmlflow_version: 3.17.2\n"


@dataclass
class Seed:
    experiment_id: str
    run_id: str
    artifact_uri: str
    log_runs: list[str]
    search_model: str
    create_model: str
    versions: int
    metric_keys: int
    points: int
    seconds: float


@dataclass
class Workload:
    name: str
    label: str
    make: Callable[[int, int], Request]
    check: Callable[[Any], str | None]  # returns a problem description, or None when the shape is right


async def seed(
    client: Client,
    tag: str,
    *,
    versions: int,
    points: int,
    metric_keys: int,
    log_runs: int,
    progress: Callable[[str], None],
) -> Seed:
    b = client.b
    t0 = time.monotonic()
    now = int(time.time() * 1000)
    exp = await client.ok(b.post(f"{API}/experiments/create", {"name": f"bench-{tag}"}))
    exp_id = exp["experiment_id"]

    async def create_run(name: str) -> dict[str, Any]:
        body = {
            "experiment_id": exp_id, "user_id": "bench", "run_name": name, "start_time": now,
            "tags": [{"key": "mlflow.user", "value": "bench"}, {"key": "mlflow.runName", "value": name},
                     {"key": "mlflow.source.name", "value": "bench_mlflow.py"},
                     {"key": "mlflow.source.type", "value": "LOCAL"}],
        }  # fmt: skip
        return (await client.ok(b.post(f"{API}/runs/create", body)))["run"]

    run = await create_run("getrun")
    run_id = run["info"]["run_id"]
    steps = max(1, points // metric_keys)
    metrics = [
        {"key": f"metric_{k:03d}", "value": k + s / steps, "timestamp": now + s, "step": s}
        for s in range(steps) for k in range(metric_keys)
    ]  # fmt: skip
    for i in range(0, len(metrics), 1000):  # MLflow accepts at most 1000 metrics per log-batch
        await client.ok(b.post(f"{API}/runs/log-batch", {"run_id": run_id, "metrics": metrics[i : i + 1000]}))
    await client.ok(b.post(f"{API}/runs/log-batch", {
        "run_id": run_id,
        "params": [{"key": f"param_{i}", "value": str(i)} for i in range(10)],
        "tags": [{"key": f"tag_{i}", "value": f"value {i}"} for i in range(5)],
    }))  # fmt: skip
    got = await client.ok(b.get(f"{API}/runs/get", {"run_id": run_id}))
    artifact_uri = got["run"]["info"]["artifact_uri"]
    if not artifact_uri.startswith("mlflow-artifacts:"):
        raise RuntimeError(f"run artifact_uri is {artifact_uri!r}, expected mlflow-artifacts:/...")
    rel = artifact_uri.removeprefix("mlflow-artifacts:").lstrip("/")
    put = b.send("PUT", f"{ARTIFACTS}/{rel}/model/MLmodel", body=MLMODEL, content_type="text/plain")
    resp = await client.call(put)
    if not 200 <= resp.status < 300:
        raise HttpFailure(put, resp)

    log_run_ids = [(await create_run(f"logbatch-{i}"))["info"]["run_id"] for i in range(log_runs)]

    search_model, create_model = f"{tag}-search", f"{tag}-create"
    for name in (search_model, create_model):
        await client.ok(b.post(f"{API}/registered-models/create", {"name": name}))
    source = f"runs:/{run_id}/model"
    for v in range(1, versions + 1):
        mv = await client.ok(
            b.post(f"{API}/model-versions/create", {"name": search_model, "source": source, "run_id": run_id})
        )
        if mv.get("model_version", {}).get("version") != str(v):
            raise RuntimeError(f"model-versions/create #{v} answered {str(mv)[:300]}")
        if v % 250 == 0:
            progress(f"  {v}/{versions} versions")
    await client.ok(
        b.post(f"{API}/registered-models/alias", {"name": search_model, "alias": "champion", "version": "1"})
    )
    return Seed(
        exp_id,
        run_id,
        artifact_uri,
        log_run_ids,
        search_model,
        create_model,
        versions,
        metric_keys,
        steps * metric_keys,
        time.monotonic() - t0,
    )


def workloads(b: RequestBuilder, s: Seed, metrics_per_batch: int = 100) -> list[Workload]:
    now = int(time.time() * 1000)
    source = f"runs:/{s.run_id}/model"

    counter = itertools.count(1)  # unique (key, step, timestamp) across all phases

    def log_batch(w: int, _seq: int) -> Request:
        seq = next(counter)
        metrics = [
            {"key": f"m{k:03d}", "value": seq + k / 1000, "timestamp": now + seq, "step": seq}
            for k in range(metrics_per_batch)
        ]
        return b.post(f"{API}/runs/log-batch", {"run_id": s.log_runs[w % len(s.log_runs)], "metrics": metrics})

    create = b.post(f"{API}/model-versions/create", {"name": s.create_model, "source": source, "run_id": s.run_id})
    search = b.get(f"{API}/model-versions/search", {"filter": f"name = '{s.search_model}'"})
    alias_get = b.get(f"{API}/registered-models/alias", {"name": s.search_model, "alias": "champion"})
    run_get = b.get(f"{API}/runs/get", {"run_uuid": s.run_id, "run_id": s.run_id})
    alias_bodies = [
        b.post(f"{API}/registered-models/alias", {"name": s.search_model, "alias": "bench", "version": str(v)})
        for v in range(1, min(s.versions, 100) + 1)
    ]

    def expect(cond: Callable[[Any], bool], what: str) -> Callable[[Any], str | None]:
        def check(doc: Any) -> str | None:
            try:
                return None if cond(doc) else what
            except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
                return f"{what} ({type(exc).__name__}: {exc})"

        return check

    return [
        Workload("log-batch", f"POST runs/log-batch ({metrics_per_batch} metrics)", log_batch,
                 expect(lambda d: d == {} or isinstance(d, dict), "a JSON object")),
        Workload("create-version", "POST model-versions/create", lambda w, q: create,
                 expect(lambda d: d["model_version"]["version"].isdigit()
                        and d["model_version"]["status"] == "READY", "model_version{version:'<int>', status:'READY'}")),
        Workload("search-versions", f"GET model-versions/search ({s.versions} versions)", lambda w, q: search,
                 expect(lambda d: len(d["model_versions"]) == s.versions and not d.get("next_page_token"),
                        f"all {s.versions} model_versions in one page")),
        Workload("alias-set", "POST registered-models/alias", lambda w, q: alias_bodies[q % len(alias_bodies)],
                 expect(lambda d: isinstance(d, dict), "a JSON object")),
        Workload("alias-get", "GET registered-models/alias", lambda w, q: alias_get,
                 expect(lambda d: d["model_version"]["version"] == "1"
                        and "champion" in d["model_version"].get("aliases", []),
                        "model_version{version:'1', aliases:['champion', ...]}")),
        Workload("get-run", f"GET runs/get ({s.points} points, {s.metric_keys} keys)", lambda w, q: run_get,
                 expect(lambda d: len(d["run"]["data"]["metrics"]) == s.metric_keys
                        and d["run"]["info"]["run_id"] == s.run_id, f"run with {s.metric_keys} latest metrics")),
    ]  # fmt: skip


async def check_shape(client: Client, wl: Workload) -> str | None:
    """One untimed request; returns the exact request/response when the status or shape is wrong."""
    req = wl.make(0, 0)
    try:
        resp = await client.call(req)
    except Exception as exc:
        return describe(req, None, f"{type(exc).__name__}: {exc}")
    if resp.status != 200:
        return describe(req, resp)
    try:
        text = resp.text()
        doc = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        return describe(req, resp, f"not JSON: {exc}")
    problem = wl.check(doc)
    return describe(req, resp, f"expected {problem}") if problem else None
