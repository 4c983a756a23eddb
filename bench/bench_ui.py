"""Web UI render time: how long a real ``registry serve`` takes to answer the UI's pages, on SQLite and PostgreSQL.

Per backend, a fresh registry (a SQLite file in a new data folder, or a new PostgreSQL database
``bench_ui_<pid>_<n>`` next to ``--postgres-url``, dropped at the end) served by ``registry serve`` with its
default **one worker** on a free loopback port, seeded through the HTTP API as users make data (but for most
versions, see ``--versions-via``):

* a model with ``--versions`` versions (10,000), each a one-file upload (one blob, uploaded once, named by every
  version). Version 1 is made through ``POST /api/v1/models/{m}/versions``; with ``--versions-via sql`` (the
  default) versions 2.. are copies of it inserted in bulk (rows of ``model_versions`` and ``version_files``, one
  minute apart, ``last_version`` set), as ``tests/ui/test_pages.py`` makes its 10,000 versions: seconds, where
  one by one through the API (``--versions-via api``) takes ~5 minutes here (~28 ms each, ~20 ms of server CPU).
  Then ``production``/``staging``/``canary`` are moved ``--moves`` times in all, with reasons, through the API
  (the promotion history);
* ``--models`` more models (60: more than the list's page of 50) with one version and ``production`` each, so
  every row of the models list has an alias and a last promotion;
* a run with 20 params, 5 tags, a ``loss`` history of ``--points`` points (1,000,000), logged through
  ``POST /api/v1/runs/{id}/log-batch`` in batches of 10,000 (the API's maximum), and two 1,000-point metrics.

Then one HTTP/1.1 keep-alive client (httpx), signed in through the sign-in form as a browser is (session cookie,
no bearer token), asks for each page ``--warmup`` times (not recorded), then ``--requests`` rounds of every page
in turn (so drift on a shared machine hits all pages alike):

| page | request |
|---|---|
| models list | ``GET /ui/`` |
| model, first page | ``GET /ui/models/{m}`` (versions 10,000..9,951, aliases, 50 promotions) |
| model, last page | ``GET /ui/models/{m}?before=51`` (versions 50..1) |
| version | ``GET /ui/models/{m}/versions/5000`` |
| run | ``GET /ui/runs/{id}`` (the HTML; its charts fetch the series below) |
| series, 1M points | ``GET /ui/runs/{id}/series?key=loss`` (≤ 5,000 points: min, max of 2,500 step ranges, in SQL) |

Latency is request sent → body read, on loopback; size is the body's bytes (the server does not compress).
``CPU ms`` is the server process's CPU per request, from ``/proc/<pid>/task/*/schedstat`` (nanoseconds, every
thread: aiosqlite's too), which stays meaningful when the machine is busy. Every answer must be 200.

Then, three times, one series request on one connection while ``GET /health`` goes out back to back on another:
how long everyone else waits while a chart loads (and how many probes fail: ``/health`` answers 503 when its
database ping times out).

``--profile`` (on by default) then takes the series endpoint apart in this process, on the same database: it runs
``registry.services.runs.series_for_chart`` itself, the code the handler calls, through a session that times each
statement it sends (execute + fetch of every row: the run lookup, the head query of at most 5,001 rows, the max-step
query, the ``GROUP BY`` aggregate over 2,500 step ranges), what is left of the call (Python turning rows into
columns), the JSON encoding (msgspec, as Litestar does) and the total, median of 5; then the aggregate alone on the
bare driver (sqlite3 or asyncpg) and its query plan (SQLite: ``EXPLAIN QUERY PLAN``; PostgreSQL:
``EXPLAIN (ANALYZE, BUFFERS)``), and the same for the head query.

The table also carries each page's p50 from the run before commit 24fc7f3 (when the series endpoint read every
point into Python and downsampled there with LTTB, and the models list ran two queries per model), when the data
is the default size.

Prints Markdown (``--markdown-out`` also writes it; ``--json-out`` the raw numbers) and removes what it made
(``--keep`` keeps the work folder with the server logs).

    .venv/bin/python bench/bench_ui.py --markdown-out bench/results/ui.md         # both backends, ~5 min
    .venv/bin/python bench/bench_ui.py --backends sqlite --versions 1000 --points 100000 --requests 10   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_artifacts import Server, load, mem_total, start_server, stop_server
from mlflow_harness.servers import Postgres

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_MS = 100.0
BATCH = 10_000
"""Metric points per log-batch call: the API's maximum (``registry.services.runs.MAX_BATCH``)."""
SERIES_KEY = "loss"
MAX_POINTS = 5_000
"""What the series endpoint answers at most (``registry.ui.runs.MAX_POINTS``): past it, ``MAX_POINTS // 2`` step
ranges, each as its lowest and highest value."""
DEFAULT_SIZE = {"versions": 10_000, "points": 1_000_000, "models": 60, "moves": 120}
BEFORE_COMMIT = "a114580"
BEFORE = {
    "sqlite": {
        "models list": 227.1,
        "model, first page": 40.5,
        "model, last page": 36.8,
        "version": 26.6,
        "run": 18.3,
        "series, 1,000,000 points": 5335.6,
    },
    "postgres": {
        "models list": 259.2,
        "model, first page": 52.5,
        "model, last page": 47.0,
        "version": 31.5,
        "run": 28.6,
        "series, 1,000,000 points": 5797.8,
    },
}
"""p50 ms per page on 2026-12-03 14:24-14:35 UTC at a114580, the commit before 24fc7f3 (series: every point read
into Python, LTTB-downsampled there; models list: two queries per model), same data, same machine."""
BEFORE_STALL = (
    "before 24fc7f3, /health waited up to 4,523 ms (SQLite) / 4,754 ms (PostgreSQL) behind one series request, "
    "and 3 probes on each backend answered HTTP 503"
)
VIA = {
    "sql": "version 1 through the API, versions 2.. copied from it in bulk SQL",
    "api": "created one by one through the API",
}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ALIASES = ("production", "staging", "canary")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    at = (len(ordered) - 1) * q
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def cpu_ns(pid: int) -> int:
    """CPU nanoseconds used so far by every live thread of ``pid`` (``schedstat``: not tick-rounded)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# --------------------------------------------------------------------------------------------- seeding


def must(answer: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if answer.status_code != status:
        raise RuntimeError(f"{what}: HTTP {answer.status_code} {answer.text[:500]}")
    return dict(answer.json()) if answer.content else {}


@dataclass
class Seeded:
    model: str
    run_id: str
    versions: int
    points: int
    seconds: dict[str, float] = field(default_factory=dict)


async def bulk_versions(database_url: str, model: str, total: int) -> None:
    """Versions 2..``total`` of ``model`` as copies of its version 1 (made through the API: same source, digest,
    author and file), inserted in bulk the way tests/ui/test_pages.py makes its 10,000 versions, one minute
    apart, each with its ``version_files`` row; the model's ``last_version`` set to ``total``. What the pages
    read is then what one-by-one creates leave, in seconds instead of minutes."""
    from datetime import timedelta

    from sqlalchemy import insert, select

    from registry.db import Database
    from registry.domain.models import ModelVersion, RegisteredModel, VersionFile

    db = Database(database_url)
    try:
        async with db.write() as session:
            found = await session.execute(select(RegisteredModel).where(RegisteredModel.name == model))
            registered = found.scalar_one()
            first = (
                await session.execute(
                    select(ModelVersion).where(ModelVersion.model_id == registered.id, ModelVersion.version == 1)
                )
            ).scalar_one()
            manifest = (await session.execute(select(VersionFile).where(VersionFile.version_id == first.id))).scalars()
            files = [(f.path, f.sha256, f.size) for f in manifest]
            start = first.created_at
            rows = [
                {
                    "model_id": registered.id,
                    "version": n,
                    "source": first.source,
                    "status": first.status,
                    "stage": first.stage,
                    "description": f"nightly build {n}",
                    "digest": first.digest,
                    "created_by": first.created_by,
                    "created_at": start + timedelta(minutes=n),
                    "updated_at": start + timedelta(minutes=n),
                }
                for n in range(2, total + 1)
            ]
            for at in range(0, len(rows), 2000):
                await session.execute(insert(ModelVersion), rows[at : at + 2000])
            ids = (
                await session.execute(
                    select(ModelVersion.id).where(ModelVersion.model_id == registered.id, ModelVersion.version > 1)
                )
            ).scalars()
            links = [{"version_id": i, "path": p, "sha256": h, "size": z} for i in ids for p, h, z in files]
            for at in range(0, len(links), 2000):
                await session.execute(insert(VersionFile), links[at : at + 2000])
            registered.last_version = total
    finally:
        await db.dispose()


def seed(
    client: httpx.Client,
    database_url: str,
    *,
    versions: int,
    versions_via: str,
    models: int,
    moves: int,
    points: int,
) -> Seeded:
    started = time.perf_counter()
    blob = b"bench-ui weights\n" * 64
    digest = hashlib.sha256(blob).hexdigest()
    must(client.put(f"/api/v1/blobs/{digest}", content=blob), 201, "upload the blob")
    files = {"files": [{"path": "model.bin", "sha256": digest, "size": len(blob)}]}

    name = "bench-ui-big"
    must(client.post("/api/v1/models/", json={"name": name, "description": "10,000 versions"}), 201, "create model")
    t0 = time.perf_counter()
    for number in range(1, (versions if versions_via == "api" else 1) + 1):
        body = {**files, "description": f"nightly build {number}"}
        must(client.post(f"/api/v1/models/{name}/versions", json=body), 201, f"create version {number}")
        if number % max(1, versions // 5) == 0:
            log(f"  {number} versions ({number / (time.perf_counter() - t0):.0f}/s)")
    if versions_via == "sql" and versions > 1:
        asyncio.run(bulk_versions(database_url, name, versions))
    seconds = {f"versions ({versions_via})": time.perf_counter() - t0}

    t0 = time.perf_counter()
    rng = random.Random(7)
    for i in range(moves):
        alias = ALIASES[i % len(ALIASES)]
        target = max(1, min(versions, versions - moves + i + rng.randint(-20, 0)))
        reason = f"move {i}: recall {rng.uniform(0.9, 0.99):.3f} on the weekly holdout"
        must(
            client.put(f"/api/v1/models/{name}/aliases/{alias}", json={"version": target, "reason": reason}),
            200,
            f"move {alias}",
        )
    for i in range(models):
        other = f"bench-ui-{i:03d}"
        must(client.post("/api/v1/models/", json={"name": other, "description": f"model {i}"}), 201, "create")
        must(client.post(f"/api/v1/models/{other}/versions", json=files), 201, "create version")
        must(
            client.put(f"/api/v1/models/{other}/aliases/production", json={"version": 1, "reason": "first"}),
            200,
            "promote",
        )
    seconds["aliases and models"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    run = must(
        client.post("/api/v1/runs/", json={"experiment": "bench-ui", "name": "million-points", "tags": {"team": "a"}}),
        201,
        "create run",
    )
    run_id = str(run["id"])
    params = {f"param_{i:02d}": str(0.001 * (i + 1)) for i in range(20)}
    tags = {f"tag_{i}": f"value {i}" for i in range(4)}
    short = [{"key": "accuracy", "value": 0.5 + 0.0004 * s, "step": s} for s in range(1000)]
    short += [{"key": "system/cpu_utilization_percentage", "value": 30.0 + s % 7, "step": s} for s in range(1000)]
    must(
        client.post(f"/api/v1/runs/{run_id}/log-batch", json={"params": params, "tags": tags, "metrics": short}),
        200,
        "log",
    )
    noise = random.Random(11)
    for first in range(0, points, BATCH):
        metrics = []
        for step in range(first, min(points, first + BATCH)):
            value = 2.0 / (1 + step / 5000) + 0.05 * math.sin(step / 900) + noise.gauss(0, 0.01)
            if noise.random() < 0.0005:
                value += noise.uniform(0.2, 1.0)  # spikes: a range's max must keep them
            metrics.append({"key": SERIES_KEY, "value": value, "step": step})
        must(client.post(f"/api/v1/runs/{run_id}/log-batch", json={"metrics": metrics}), 200, "log-batch")
    seconds["metrics"] = time.perf_counter() - t0
    seconds["all"] = time.perf_counter() - started
    return Seeded(model=name, run_id=run_id, versions=versions, points=points, seconds=seconds)


def signed_in_client(url: str, token: str) -> httpx.Client:
    """A client with a session cookie, got through the sign-in form as a browser gets it."""
    client = httpx.Client(base_url=url, timeout=120, follow_redirects=False)
    form = client.get("/ui/sign-in")
    found = CSRF.search(form.text)
    if form.status_code != 200 or found is None:
        raise RuntimeError(f"no sign-in form: HTTP {form.status_code}")
    answer = client.post("/ui/sign-in", data={"csrf": found.group(1), "token": token, "next": "/ui/"})
    if answer.status_code != 303 or "mk_session" not in client.cookies:
        raise RuntimeError(f"sign-in failed: HTTP {answer.status_code} {answer.text[:300]}")
    return client


# --------------------------------------------------------------------------------------------- measuring


@dataclass
class PageResult:
    name: str
    path: str
    latencies: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    first: float = float("nan")
    """Seconds of the page's first request: for the series, the reduction in the database (later requests are
    served from the reduced answer the process keeps until the series changes)."""

    def summary(self) -> dict[str, Any]:
        ms = [s * 1000 for s in self.latencies]
        return {
            "page": self.name,
            "path": self.path,
            "first_ms": self.first * 1000,
            "n": len(ms),
            "p50_ms": percentile(ms, 0.5),
            "p95_ms": percentile(ms, 0.95),
            "max_ms": max(ms),
            "cpu_ms": statistics.median(self.cpu) * 1000,
            "bytes": int(statistics.median(self.sizes)),
        }


def pages_for(seeded: Seeded) -> list[tuple[str, str]]:
    m = seeded.model
    return [
        ("models list", "/ui/"),
        ("model, first page", f"/ui/models/{m}"),
        ("model, last page", f"/ui/models/{m}?before=51"),
        ("version", f"/ui/models/{m}/versions/{max(1, seeded.versions // 2)}"),
        ("run", f"/ui/runs/{seeded.run_id}"),
        (f"series, {seeded.points:,} points", f"/ui/runs/{seeded.run_id}/series?key={SERIES_KEY}"),
    ]


def check_page(name: str, answer: httpx.Response, seeded: Seeded) -> None:
    if answer.status_code != 200:
        raise RuntimeError(f"{name}: HTTP {answer.status_code} {answer.text[:300]}")
    if name.startswith("series"):
        body = answer.json()
        shown = len(body["steps"])
        reduced = seeded.points > MAX_POINTS
        if (
            body["total"] != seeded.points
            or body.get("reduced") is not reduced
            or not (0 < shown <= MAX_POINTS if reduced else shown == seeded.points)
        ):
            raise RuntimeError(
                f"{name}: unexpected series total={body['total']} reduced={body.get('reduced')} points={shown}"
            )
    elif "Sign in" in answer.text and "<h1>Sign in</h1>" in answer.text:
        raise RuntimeError(f"{name}: got the sign-in page, the session cookie was not taken")


def measure(client: httpx.Client, server_pid: int, seeded: Seeded, *, warmup: int, rounds: int) -> list[PageResult]:
    results = [PageResult(name, path) for name, path in pages_for(seeded)]
    for result in results:
        t0 = time.perf_counter()
        answer = client.get(result.path)
        _ = answer.content
        result.first = time.perf_counter() - t0
        check_page(result.name, answer, seeded)
        for _ in range(warmup):
            check_page(result.name, client.get(result.path), seeded)
    for i in range(rounds):
        for result in results:
            cpu0 = cpu_ns(server_pid)
            t0 = time.perf_counter()
            answer = client.get(result.path)
            _ = answer.content
            elapsed = time.perf_counter() - t0
            cpu = (cpu_ns(server_pid) - cpu0) / 1e9
            check_page(result.name, answer, seeded)
            result.latencies.append(elapsed)
            result.cpu.append(cpu)
            result.sizes.append(len(answer.content))
        if (i + 1) % 10 == 0:
            log(f"  round {i + 1}/{rounds}")
    return results


def stall(
    url: str, cookies: httpx.Cookies, path: str, *, token: str, run_id: str, next_step: int, repeats: int = 3
) -> dict[str, Any]:
    """What one series request does to everyone else: while it runs on one connection, ``GET /health`` goes out
    back to back on another (it pings the database, so it needs the event loop and a connection, little else).
    Before each try one point is logged to the series (after its last step), so the server reduces it again
    instead of answering from the reduced series it keeps. Returns the series' seconds, the probes' latencies
    and how many probes failed (by status), over ``repeats`` tries."""
    import threading

    series_s: list[float] = []
    probes: list[float] = []
    failed: dict[int, int] = {}
    with httpx.Client(base_url=url, cookies=cookies, timeout=120) as heavy, httpx.Client(base_url=url) as probe:
        probe.get("/health")
        for attempt in range(repeats):
            point = {"key": "loss", "value": 0.5, "step": next_step + attempt, "timestamp": int(time.time() * 1000)}
            logged = probe.post(
                f"/api/v1/runs/{run_id}/log-batch",
                json={"metrics": [point]},
                headers={"authorization": f"Bearer {token}"},
            )
            if logged.status_code != 200:
                raise RuntimeError(f"log-batch: HTTP {logged.status_code} {logged.text[:200]}")
            done = threading.Event()

            def fetch(done: threading.Event = done) -> None:
                t0 = time.perf_counter()
                try:
                    answer = heavy.get(path)
                    if answer.status_code != 200:
                        raise RuntimeError(f"series: HTTP {answer.status_code}")
                finally:
                    series_s.append(time.perf_counter() - t0)
                    done.set()

            worker = threading.Thread(target=fetch)
            worker.start()
            time.sleep(0.05)  # let the series request reach the server first
            while not done.is_set():
                t0 = time.perf_counter()
                status = probe.get("/health").status_code
                probes.append(time.perf_counter() - t0)
                if status != 200:  # 503: its database ping timed out (HEALTH_TIMEOUT_S) behind the blocked loop
                    failed[status] = failed.get(status, 0) + 1
            worker.join()
    ms = [p * 1000 for p in probes]
    return {
        "series_s": statistics.median(series_s),
        "probes": len(ms),
        "health_p50_ms": percentile(ms, 0.5),
        "health_max_ms": max(ms) if ms else float("nan"),
        "health_failed": {str(k): v for k, v in failed.items()},
    }


# --------------------------------------------------------------------------------------------- profiling


class TimedSession:
    """An ``AsyncSession`` stand-in that passes everything through and times each statement sent through
    ``execute``, ``scalar`` and ``get``. The async session buffers every row before it returns, so each time is
    the driver's execute plus the fetch of all rows (and SQLAlchemy's row objects)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.calls: list[tuple[str, float, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        result = await self.session.execute(statement, *args, **kwargs)
        self.calls.append(("execute", time.perf_counter() - t0, statement))
        return result

    async def scalar(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        result = await self.session.scalar(statement, *args, **kwargs)
        self.calls.append(("scalar", time.perf_counter() - t0, statement))
        return result

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        result = await self.session.get(*args, **kwargs)
        self.calls.append(("get", time.perf_counter() - t0, None))
        return result


def statement_stage(kind: str, statement: Any) -> str:
    """Which of ``series_for_chart``'s statements this is, from its SQL."""
    if kind == "get":
        return "run lookup (session.get)"
    sql = " ".join(str(statement).lower().split())
    if "group by" in sql:
        return "GROUP BY aggregate over the step ranges (execute + fetch)"
    if "latest_metrics" in sql:
        return "point count and latest point (latest_metrics)"
    if "limit" in sql and " desc" in sql:
        return "tail query (last point)"
    if "limit" in sql:
        return "head query (first point)"
    if "max(metrics.step)" in sql:
        return "max-step query"
    if "min(metrics.timestamp)" in sql:
        return "time-range query (all steps equal)"
    return "other query"


def literal_sql(statement: Any, dialect: Any) -> str:
    """The statement as its dialect sends it, with the parameters written in (for EXPLAIN and the bare driver)."""
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    return "\n".join(line.rstrip() for line in sql.strip().splitlines())


async def profile_series(database_url: str, run_id: str, key: str, repeats: int = 5) -> dict[str, Any]:
    """The series endpoint's pieces, timed in this process on the same database (median of ``repeats``, after a
    warm-up): ``series_for_chart`` itself through a ``TimedSession`` (each statement, and the rest of the call),
    the JSON encoding, the total; then the head query and the aggregate alone on the bare driver, and their plans."""
    import msgspec

    from registry.db import Database
    from registry.services import runs
    from registry.ui.runs import series_body

    stages: dict[str, list[float]] = {}

    def note(stage: str, seconds: float) -> None:
        stages.setdefault(stage, []).append(seconds * 1000)

    sent: dict[str, str] = {}  # stage → the SQL of the head query and the aggregates, parameters written in
    shape: dict[str, Any] = {}
    db = Database(database_url)
    try:
        for attempt in range(repeats + 1):  # the first is a warm-up
            if attempt == 1:
                stages.clear()
            runs._REDUCED.clear()  # time the reduction, not the answer the process keeps afterwards
            t_all = time.perf_counter()
            async with db.read() as session:
                timed = TimedSession(session)
                t0 = time.perf_counter()
                found = await runs.series_for_chart(timed, run_id=run_id, key=key, limit=MAX_POINTS)  # type: ignore[arg-type]
                call = time.perf_counter() - t0
                seen: dict[str, int] = {}
                for kind, seconds, statement in timed.calls:
                    stage = statement_stage(kind, statement)
                    seen[stage] = seen.get(stage, 0) + 1
                    if seen[stage] > 1:  # the same kind of statement again (e.g. one aggregate for min, one for max)
                        stage = f"{stage} #{seen[stage]}"
                    note(stage, seconds)
                    if stage.startswith(("head", "GROUP BY")):
                        sent[stage] = literal_sql(statement, session.get_bind().dialect)
                note("rest of series_for_chart (Python: rows → columns)", call - sum(c[1] for c in timed.calls))
            t0 = time.perf_counter()
            msgspec.json.encode(series_body(key, found))
            note("JSON encode (msgspec)", time.perf_counter() - t0)
            note("total (in-process)", time.perf_counter() - t_all)
            shape = {"total": found.total, "reduced": found.reduced, "points": len(found.steps)}
        plans: dict[str, str] = {}
        for name, sql in sent.items():
            raw, plans[name] = await bare_query(database_url, sql, repeats)
            for seconds in raw:
                note(f"{name.split(' (')[0]}{name.partition(')')[2]}, alone on the bare driver", seconds)
    finally:
        await db.dispose()
    return {
        "stages_ms": {stage: statistics.median(ms) for stage, ms in stages.items()},
        "shape": shape,
        "sql": sent,
        "plans": plans,
    }


async def bare_query(database_url: str, sql: str, repeats: int) -> tuple[list[float], str]:
    """A query ``series_for_chart`` sent, on sqlite3 or asyncpg alone (after a warm-up), and its plan."""
    times: list[float] = []
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        try:
            plan = "\n".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            for _ in range(repeats + 1):
                t0 = time.perf_counter()
                conn.execute(sql).fetchall()
                times.append(time.perf_counter() - t0)
        finally:
            conn.close()
        return times[1:], plan
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            await conn.fetch(sql)
            times.append(time.perf_counter() - t0)
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        plan = "\n".join(r[0] for r in rows)
    finally:
        await conn.close()
    return times[1:], plan


# --------------------------------------------------------------------------------------------- report


def render(runs: list[dict[str, Any]], meta: dict[str, str], args: argparse.Namespace) -> str:
    out = ["# Web UI render time", ""]
    out.append(
        f"`bench/bench_ui.py` on {meta['date']}: {meta['machine']}. Python {meta['python']}, SQLite "
        f"{meta['sqlite']}, PostgreSQL {meta['postgres']}. One `registry serve` worker (its default), client on "
        f"the same machine over loopback, one keep-alive connection signed in with a session cookie; "
        f"{args.warmup} warm-up requests per page, then {args.requests} rounds over all pages. "
        f"Load average before/after: {meta['load_before']} / {meta['load_after']}."
    )
    out.append("")
    out.append(
        f"Data: a model with {args.versions:,} versions, one file each ({VIA[args.versions_via]}), "
        f"{args.moves} alias moves; {args.models} more models with an alias each; a run whose `{SERIES_KEY}` has "
        f"{args.points:,} points (log-batch, {BATCH:,} per call) plus two 1,000-point metrics."
    )
    out.append("")
    out.append(f"Target: p50 ≤ {TARGET_MS:.0f} ms per page.")
    out.append("")
    comparable = all(getattr(args, k) == v for k, v in DEFAULT_SIZE.items()) and args.versions_via == "sql"
    before_head = f" p50 ms before ({BEFORE_COMMIT}) |" if comparable else ""
    out.append(
        f"| backend | page |{before_head} first view ms | p50 ms | p95 ms | max ms | server CPU ms (p50) | size "
        "| p50 ≤ 100 ms |"
    )
    out.append("|---|---|" + ("--:|" if comparable else "") + "--:|--:|--:|--:|--:|--:|:-:|")
    for run in runs:
        for row in run["pages"]:
            ok = "yes" if row["p50_ms"] <= TARGET_MS else "**no**"
            before = BEFORE.get(run["backend"], {}).get(row["page"], float("nan"))
            before_cell = f" {before:.1f} |" if comparable else ""
            out.append(
                f"| {run['backend']} | {row['page']} |{before_cell} {row.get('first_ms', float('nan')):.1f} | "
                f"{row['p50_ms']:.1f} | {row['p95_ms']:.1f} | "
                f"{row['max_ms']:.1f} | {row['cpu_ms']:.1f} | {row['bytes'] / 1024:.1f} KiB | {ok} |"
            )
    out.append("")
    out.append("Paths: " + "; ".join(f"{row['page']}: `{row['path']}`" for row in runs[0]["pages"]) + ".")
    out.append("")
    out.append(
        "Seeding time (not part of the page timings): "
        + "; ".join(
            f"{run['backend']}: " + ", ".join(f"{k} {v:.0f} s" for k, v in run["seed_s"].items()) for run in runs
        )
        + "."
    )
    out.append("")
    out.append(
        "Meanwhile for everyone else: while one series request runs, `GET /health` sent back to back on another "
        "connection waits "
        + "; ".join(
            f"{run['backend']}: up to {run['stall']['health_max_ms']:.0f} ms (median "
            f"{run['stall']['health_p50_ms']:.0f} ms over {run['stall']['probes']} probes, the series taking "
            f"{run['stall']['series_s']:.1f} s"
            + (
                ", and " + ", ".join(f"{n} answered HTTP {code}" for code, n in run["stall"]["health_failed"].items())
                if run["stall"]["health_failed"]
                else ""
            )
            + ")"
            for run in runs
        )
        + " (3 tries each; /health alone answers in a few ms)"
        + (f"; {BEFORE_STALL}." if comparable else ".")
    )
    profiled = [run for run in runs if run.get("profile")]
    if profiled:
        out += ["", f"## Where the series endpoint's time goes ({args.points:,} points)", ""]
        out.append(
            "`registry.services.runs.series_for_chart`, the code the handler calls, run in the benchmark process on "
            "the same database through a session that times each statement (execute + fetch of all its rows), "
            "then the JSON encoding; median of 5 after a warm-up (not the server, but the same code and driver):"
        )
        out.append("")
        stages = list(dict.fromkeys(stage for r in profiled for stage in r["profile"]["stages_ms"]))
        out.append("| stage | " + " | ".join(f"{r['backend']} ms" for r in profiled) + " |")
        out.append("|---|" + "--:|" * len(profiled))
        for stage in stages:
            values = [r["profile"]["stages_ms"].get(stage) for r in profiled]
            out.append(f"| {stage} | " + " | ".join("-" if v is None else f"{v:.1f}" for v in values) + " |")
        out.append("")
        out.append(
            "Answer: "
            + "; ".join(
                f"{r['backend']}: {r['profile']['shape']['points']:,} points of {r['profile']['shape']['total']:,}, "
                f"reduced={r['profile']['shape']['reduced']}"
                for r in profiled
            )
            + "."
        )
        names = list(dict.fromkeys(name for r in profiled for name in r["profile"]["sql"]))
        for name in sorted(names, key=lambda n: not n.startswith("GROUP BY")):  # the aggregates first
            for run in profiled:
                if name not in run["profile"]["sql"]:
                    continue
                title = name.split(" (")[0] + name.partition(")")[2]
                kind = "EXPLAIN QUERY PLAN" if run["backend"] == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS)"
                out += ["", f"The {title}, {run['backend']} (as sent, parameters written in):", "", "```sql"]
                out += [run["profile"]["sql"][name], "```", "", f"{kind}:", ""]
                out += ["```", run["profile"]["plans"][name], "```"]
    out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- main


def bench_backend(backend: str, args: argparse.Namespace, work: Path, postgres: Postgres | None) -> dict[str, Any]:
    extra_env: dict[str, str] = {}
    database_url = f"sqlite:///{(work / backend / 'data' / 'registry.db').resolve()}"
    if backend == "postgres":
        assert postgres is not None
        database_url = postgres.create(f"bench_ui_{os.getpid()}_{len(postgres.created)}")
        extra_env["MODELKEEP_DATABASE_URL"] = database_url
    (work / backend).mkdir(parents=True)
    log(f"{backend}: starting registry serve (1 worker)")
    server: Server = start_server(work / backend / "data", work / backend, extra_env=extra_env)
    try:
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {server.token}"}, timeout=120) as api:
            log(f"{backend}: seeding {args.versions:,} versions, {args.points:,} points")
            seeded = seed(
                api,
                database_url,
                versions=args.versions,
                versions_via=args.versions_via,
                models=args.models,
                moves=args.moves,
                points=args.points,
            )
        log(f"{backend}: seeded in {seeded.seconds['all']:.0f} s ({seeded.seconds})")
        client = signed_in_client(server.url, server.token)
        try:
            log(f"{backend}: measuring")
            results = measure(client, server.pid, seeded, warmup=args.warmup, rounds=args.requests)
            log(f"{backend}: /health while a series request runs")
            blocked = stall(
                server.url,
                client.cookies,
                pages_for(seeded)[-1][1],
                token=server.token,
                run_id=seeded.run_id,
                next_step=seeded.points,
            )
        finally:
            client.close()
        profile = None
        if args.profile:
            log(f"{backend}: profiling the series endpoint's pieces")
            profile = asyncio.run(profile_series(database_url, seeded.run_id, SERIES_KEY))
    finally:
        stop_server(server)
    return {
        "backend": backend,
        "pages": [r.summary() for r in results],
        "seed_s": seeded.seconds,
        "stall": blocked,
        "profile": profile,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument(
        "--versions-via",
        choices=("sql", "api"),
        default="sql",
        help="sql: version 1 through the API, the rest copied in bulk (seconds); api: all one by one (~5 min)",
    )
    parser.add_argument("--models", type=int, default=60)
    parser.add_argument("--moves", type=int, default=120)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--requests", type=int, default=30, help="recorded rounds over all pages (≥ 30)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--markdown-out", type=Path)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"sqlite", "postgres"}:
        parser.error(f"unknown backends {sorted(unknown)}")

    work = Path(tempfile.mkdtemp(prefix="bench-ui-", dir=args.workdir))
    postgres = Postgres(args.postgres_url) if "postgres" in backends else None
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores ({cpu_model()}), {mem_total()} RAM, {platform.system()} "
        f"{platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": postgres.server_version() if postgres else "-",
        "load_before": load(),
    }
    runs: list[dict[str, Any]] = []
    try:
        for backend in backends:
            runs.append(bench_backend(backend, args, work, postgres))
    finally:
        if postgres is not None:
            postgres.drop_all()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    meta["load_after"] = load()
    report = render(runs, meta, args)
    print(report)
    if args.markdown_out:
        args.markdown_out.write_text(report)
    if args.json_out:
        args.json_out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
