"""Production monitoring: profiling against Evidently's ``DataDriftPreset`` on the same rows, a drift check over 24
hourly buckets through the API, the server's RSS while it ingests, and registry reads while it ingests.

One run, side by side:

* **Profiling, one core.** A reference and a current table of ``--rows`` rows x 25 columns (20 numerical,
  5 categorical with 8 values; in the current table ``num_0`` moves by 0.5 standard deviations and ``cat_0``
  is re-weighted) are written to Parquet once (not timed). A worker process pinned to CPU 0 (as with
  ``taskset -c 0``) reads the current file, conforms it to the schema inferred from the reference and
  profiles it with ``monitoring.profile.profile_table`` (median and minimum of ``--repeats``), and times the
  drift check of the two profiles (``monitoring.spec.check``, the spec's defaults). A second worker, pinned
  the same way, runs Evidently 0.7's ``DataDriftPreset`` (``Report(..., include_tests=True).run``) on the
  same two files read into pandas, once. Each worker reports its peak RSS (``getrusage`` of itself) and the
  columns it found drifted. ``--skip-evidently`` leaves Evidently out (it takes minutes and ~2 GB).
* **The registry.** A ``registry serve`` (SQLite and local blobs in a fresh folder; ``--database-url`` for
  another, empty, database) gets a model whose version 1 has the reference as its baseline and is in
  ``production``. The current table is cut into 48 batches, two per hour over the last 24 full hours.
  - *Reads, idle*: ``GET /api/v1/models/{name}/versions/1`` at ``--read-rate`` requests/s for
    ``--read-seconds`` (one keep-alive connection, in this process).
  - *Reads while ingesting*: the same reads while a separate process POSTs the batches to
    ``/monitor/batches?alias=production`` back to back over ``--senders`` connections, round after round,
    for at least ``--read-seconds`` and at least one full round. The RSS and PSS of the server and its
    profiling workers (``MODELKEEP_MONITOR_WORKERS``; ``--monitor-workers``) are sampled every 20 ms and
    summed; the server's own kernel peak mark, VmHWM, reset just before, is read after. PSS counts a page
    shared by n processes (libraries, what workers share with their fork server) 1/n in each, so its sum is
    the memory the tree really holds; an RSS sum counts shared pages once per process.
  - *Check over 24 buckets*: ``POST /monitor/checks?alias=production&window=24h&end=...`` ``--checks`` times
    after a warm-up, median and p99 (each check is stored, as a scheduled one would be).

Prints a Markdown report (``--markdown-out`` also writes it) and removes what it wrote (``--keep`` keeps it).

    .venv/bin/python bench/bench_monitoring.py                       # everything, ~5 min (Evidently ~2.5 of them)
    .venv/bin/python bench/bench_monitoring.py --skip-evidently --rows 200000   # a quick run
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from bench_artifacts import (
    RssSampler,
    Server,
    launch,
    load,
    mem_total,
    proc_cpu,
    proc_status,
    reset_hwm,
    start_server,
    stop_server,
    tree_rss,
)

NUMERIC = [f"num_{i}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
LEVELS = ["DE", "FR", "IT", "ES", "NL", "PL", "SE", "AT"]
WEIGHTS = [0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05]
REWEIGHTED = [0.15, 0.2, 0.15, 0.1, 0.1, 0.1, 0.1, 0.1]
SHIFT = 0.5
"""``num_0`` moves by this many standard deviations in the current table; ``cat_0`` takes REWEIGHTED."""
PARQUET = {"content-type": "application/vnd.apache.parquet"}
BATCHES_PER_HOUR = 2
HOURS = 24


def pin_to_one_core() -> None:
    """What ``taskset -c 0`` does, for this process and the threads it starts afterwards (pyarrow's pool)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})


def peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    at = (len(ordered) - 1) * q
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


# --------------------------------------------------------------------------------------------- data


def make_table(rows: int, seed: int, *, drifted: bool) -> Any:
    """``rows`` x (20 numerical + 5 categorical) columns; ``drifted`` moves num_0 and re-weights cat_0."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        mean, scale = 10.0 * i, 1.0 + i / 4
        shift = SHIFT * scale if drifted and i == 0 else 0.0
        columns[name] = rng.normal(mean + shift, scale, rows)
    for i, name in enumerate(CATEGORICAL):
        weights = REWEIGHTED if drifted and i == 0 else WEIGHTS
        codes = rng.choice(len(LEVELS), rows, p=weights)
        columns[name] = pa.array(np.array(LEVELS, dtype=object)[codes], pa.string())
    return pa.table(columns)


def write_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, path)


def parquet_bytes(table: Any) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


# --------------------------------------------------------------------------------------------- workers


def worker_profile(reference: Path, current: Path, repeats: int) -> dict[str, Any]:
    """Profiling and checking on one core: the product's own code, as the server runs it."""
    pin_to_one_core()
    import pyarrow as pa
    import pyarrow.parquet as pq

    from monitoring.profile import conform, infer_schema, profile_table
    from monitoring.spec import check, load_spec

    body = current.read_bytes()
    ref_table = pq.read_table(reference)
    schema = infer_schema(ref_table)
    started = time.perf_counter()
    ref_profile = profile_table(conform(ref_table, schema), schema)
    reference_seconds = time.perf_counter() - started
    del ref_table
    # From here on, the peak is that of taking in the current table alone: its Parquet bytes, the table,
    # the profile (the reference is only a profile now, as in the server).
    pa.default_memory_pool().release_unused()
    rss_before = proc_status(os.getpid())["VmRSS"]
    hwm_reset = reset_hwm(os.getpid())

    read, profile, total, cpu = [], [], [], []
    cur_profile = None
    for _ in range(repeats):
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        table = pq.read_table(io.BytesIO(body))
        t1 = time.perf_counter()
        cur_profile = profile_table(conform(table, schema), schema)
        t2 = time.perf_counter()
        read.append(t1 - t0)
        profile.append(t2 - t1)
        total.append(t2 - t0)
        cpu.append(time.process_time() - cpu0)
        del table
    assert cur_profile is not None
    spec = load_spec("version: 1\n")
    checks = []
    result = None
    for _ in range(20):
        t0 = time.perf_counter()
        result = check(ref_profile, cur_profile, schema, spec)
        checks.append(time.perf_counter() - t0)
    assert result is not None
    return {
        "rows": cur_profile.rows,
        "columns": len(schema.columns),
        "kinds": {kind: sum(1 for k in schema.columns.values() if k == kind) for kind in set(schema.columns.values())},
        "read_s": read,
        "profile_s": profile,
        "total_s": total,
        "cpu_s": cpu,
        "reference_profile_s": reference_seconds,
        "check_s": checks,
        "profile_bytes": len(cur_profile.to_bytes()),
        "drifted": sorted(result.drifted),
        "drift_detected": result.drift_detected,
        "methods": sorted({c.method for c in result.columns}),
        "rss_before": rss_before,
        "peak_rss_current": proc_status(os.getpid())["VmHWM"] if hwm_reset else None,
        "peak_rss": peak_rss(),
    }


def worker_evidently(reference: Path, current: Path) -> dict[str, Any]:
    """Evidently 0.7's DataDriftPreset on the same two files, once."""
    pin_to_one_core()
    t0 = time.perf_counter()
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    import_seconds = time.perf_counter() - t0
    ref_df = pd.read_parquet(reference)
    cur_df = pd.read_parquet(current)
    rss_before = peak_rss()
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    t0 = time.perf_counter()
    ref = Dataset.from_pandas(ref_df, data_definition=definition)
    cur = Dataset.from_pandas(cur_df, data_definition=definition)
    t1 = time.perf_counter()
    snapshot = Report([DataDriftPreset(columns=NUMERIC + CATEGORICAL)], include_tests=True).run(cur, ref)
    t2 = time.perf_counter()
    data = snapshot.dict()
    status = {t["metric_config"]["metric_id"]: str(t["status"]) for t in data["tests"]}
    drifted, detected, methods = [], None, set()
    for metric in data["metrics"]:
        config = metric["config"]
        verdict = status.get(metric["id"])
        if config["type"].endswith(":ValueDrift"):
            methods.add(str(config.get("method")))
            if verdict is not None and verdict.endswith("FAIL"):
                drifted.append(config["column"])
        elif config["type"].endswith(":DriftedColumnsCount"):
            detected = verdict is not None and verdict.endswith("FAIL")
    return {
        "import_s": import_seconds,
        "dataset_s": t1 - t0,
        "run_s": t2 - t1,
        "total_s": t2 - t0,
        "drifted": sorted(drifted),
        "drift_detected": detected,
        "methods": sorted(methods),
        "peak_rss_before_run": rss_before,
        "peak_rss": peak_rss(),
    }


def worker_ingest(
    url: str, token: str, model: str, manifest: Path, senders: int, seconds: float, paced: float
) -> dict[str, Any]:
    """POST the batches back to back over ``senders`` connections, round after round, for at least ``seconds``
    and at least one full round; with ``paced`` > 0, ``paced`` batches per second for ``seconds``. A separate
    process, so its work does not share a GIL with the reader."""
    batches = json.loads(manifest.read_text())
    bodies = [(Path(b["file"]).read_bytes(), b["at"], b["rows"]) for b in batches]
    lock = threading.Lock()
    state = {"next": 0, "requests": 0, "rows": 0, "errors": 0}
    latencies: list[float] = []
    first_round: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds

    def send() -> None:
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=600) as client:
            while True:
                with lock:
                    index = state["next"]
                    if (paced or index >= len(bodies)) and time.perf_counter() >= deadline:
                        return
                    state["next"] += 1
                if paced:  # the index-th batch is due index/paced seconds after the start
                    time.sleep(max(0.0, started + index / paced - time.perf_counter()))
                body, at, rows = bodies[index % len(bodies)]
                t0 = time.perf_counter()
                answer = client.post(
                    f"/api/v1/models/{model}/monitor/batches",
                    params={"alias": "production", "at": at},
                    content=body,
                    headers=PARQUET,
                )
                done = time.perf_counter()
                with lock:
                    latencies.append(done - t0)
                    if answer.status_code != 200:
                        state["errors"] += 1
                        print(f"batch refused: {answer.status_code} {answer.text[:300]}", file=sys.stderr)
                        continue
                    state["requests"] += 1
                    state["rows"] += rows
                    if state["requests"] == len(bodies):  # as many rows as the current table: one round's worth
                        first_round.append(done - started)

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "seconds": time.perf_counter() - started,
        "requests": state["requests"],
        "rows": state["rows"],
        "errors": state["errors"],
        "first_round_s": min(first_round) if first_round else None,
        "batch_p50_s": percentile(latencies, 0.5),
        "batch_p99_s": percentile(latencies, 0.99),
    }


def run_worker(args: list[str], *, timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"worker {args[0]} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------------------------- the registry


@dataclass
class Reads:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.5)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)


def paced_reads(client: httpx.Client, path: str, rate: float, until: Any) -> Reads:
    """GET ``path`` every 1/``rate`` s (one request at a time) until ``until()`` is true."""
    reads = Reads()
    interval = 1.0 / rate
    next_at = time.perf_counter()
    while not until():
        t0 = time.perf_counter()
        answer = client.get(path)
        reads.latencies.append(time.perf_counter() - t0)
        if answer.status_code != 200:
            reads.errors += 1
        next_at += interval
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        else:
            next_at = time.perf_counter()
    return reads


def set_up_model(client: httpx.Client, reference: Path) -> tuple[str, float, int]:
    """A model whose version 1 has ``reference`` as its baseline and is in production; returns the name, the
    seconds the baseline took and the server-reported rows."""
    name = "bench-monitored"
    made = client.post("/api/v1/models", json={"name": name})
    run = client.post("/api/v1/runs", json={"name": "bench"})
    if made.status_code != 201 or run.status_code != 201:
        raise RuntimeError(f"set-up failed: {made.status_code} {made.text} / {run.status_code} {run.text}")
    run_id = run.json()["id"]
    for answer in (
        client.put(f"/api/v1/runs/{run_id}/artifacts/model.bin", content=b"weights"),
        client.post(f"/api/v1/models/{name}/versions", json={"run_id": run_id, "path": "model.bin"}),
    ):
        if answer.status_code != 201:
            raise RuntimeError(f"set-up failed: {answer.status_code} {answer.text}")
    t0 = time.perf_counter()
    with open(reference, "rb") as handle:
        made = client.put(f"/api/v1/models/{name}/versions/1/monitor/baseline", content=handle.read(), headers=PARQUET)
    seconds = time.perf_counter() - t0
    if made.status_code != 200:
        raise RuntimeError(f"baseline failed: {made.status_code} {made.text}")
    moved = client.put(f"/api/v1/models/{name}/aliases/production", json={"version": 1, "reason": "bench"})
    if moved.status_code != 200:
        raise RuntimeError(f"promotion failed: {moved.status_code} {moved.text}")
    return name, seconds, int(made.json()["rows"])


def write_batches(current: Any, folder: Path, first_hour: datetime) -> Path:
    """The current table as HOURS x BATCHES_PER_HOUR Parquet bodies, each stamped (``at``) inside its hour."""
    folder.mkdir()
    count = HOURS * BATCHES_PER_HOUR
    size = -(-current.num_rows // count)
    manifest = []
    for i in range(count):
        part = current.slice(i * size, size)
        at = first_hour + timedelta(hours=i // BATCHES_PER_HOUR, minutes=10 + 20 * (i % BATCHES_PER_HOUR))
        path = folder / f"batch-{i:02d}.parquet"
        path.write_bytes(parquet_bytes(part))
        manifest.append({"file": str(path), "at": at.isoformat(), "rows": part.num_rows})
    listing = folder / "manifest.json"
    listing.write_text(json.dumps(manifest))
    return listing


@dataclass
class ApiResult:
    baseline_s: float = 0.0
    baseline_rows: int = 0
    rss_start: int = 0
    rss_after_baseline: int = 0
    hwm_baseline: int | None = None
    tree_peak_baseline: int = 0
    tree_pss_peak_baseline: int = 0
    tree_after_baseline: int = 0
    tree_hwm_baseline: int | None = None
    rss_before_ingest: int = 0
    rss_peak_ingest: int = 0
    pss_peak_ingest: int = 0
    hwm_ingest: int | None = None
    rss_after_ingest: int = 0
    tree_after_ingest: int = 0
    idle: Reads = field(default_factory=Reads)
    busy: Reads = field(default_factory=Reads)
    ingest: dict[str, Any] = field(default_factory=dict)
    paced: dict[str, Any] | None = None
    paced_reads: Reads = field(default_factory=Reads)
    rss_peak_paced: int = 0
    pss_peak_paced: int = 0
    checks: list[float] = field(default_factory=list)
    check_rows: int = 0
    check_buckets: int = 0
    check_status: str = ""
    check_drifted: list[str] = field(default_factory=list)


def ingest_while_reading(
    server: Server, client: httpx.Client, *, name: str, manifest: Path, args: argparse.Namespace, paced: float
) -> tuple[dict[str, Any], Reads, RssSampler, int | None]:
    """Ingest from a separate process (full speed over ``args.senders`` connections, or ``paced`` batches/s over
    one) while this process reads; returns the ingestion's stats, the reads, the RSS samples and VmHWM."""
    hwm_reset = reset_hwm(server.pid)
    tree_reset = reset_tree_hwm(server.pid)
    cpu0, tree0, wall0 = proc_cpu(server.pid), tree_cpu(server.pid), time.perf_counter()
    ingest = subprocess.Popen(
        [sys.executable, __file__, "--worker", "ingest", server.url, server.token, name, str(manifest),
         str(1 if paced else args.senders), str(args.read_seconds), str(paced)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    read_path = f"/api/v1/models/{name}/versions/1"
    with RssSampler(server.pid, pss=True) as sampler:
        reads = paced_reads(client, read_path, args.read_rate, lambda: ingest.poll() is not None)
    out, err = ingest.communicate()
    if ingest.returncode != 0:
        raise RuntimeError(f"ingestion failed:\n{out[-2000:]}\n{err[-4000:]}")
    hwm = proc_status(server.pid).get("VmHWM") if hwm_reset else None
    stats = dict(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - wall0
    stats["server_cores"] = (proc_cpu(server.pid) - cpu0) / wall
    stats["tree_cores"] = (tree_cpu(server.pid) - tree0) / wall
    stats["tree_hwm"] = tree_hwm(server.pid) if tree_reset else None
    return stats, reads, sampler, hwm


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                found += tree_pids(int(child))
            except (OSError, ValueError):
                pass
    return found


def reset_tree_hwm(pid: int) -> bool:
    """Reset VmHWM of ``pid`` and its descendants (processes started later begin with their own)."""
    return all([reset_hwm(p) for p in tree_pids(pid)])


def tree_hwm(pid: int) -> int:
    """The sum of each process's peak RSS (VmHWM) in the tree: a bound on the tree's peak, reached if every
    process peaked at once (sampling every 20 ms can miss a worker's short peak)."""
    total = 0
    for p in tree_pids(pid):
        try:
            total += proc_status(p).get("VmHWM", 0)
        except OSError:
            pass
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants: their own while they live, and through the reaping parent's
    ``cutime``/``cstime`` once they exited (profiling workers are replaced every few dozen tasks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                total += tree_cpu(int(child))
            except (OSError, ValueError):
                pass
    return total


def restart(server: Server, work: Path, extra_env: dict[str, str]) -> Server:
    """The same registry (data folder, database, token) in a new ``registry serve`` process on a new port.
    ``start_server`` cannot do it: it creates a token named ``bench``, and token names are never reused."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env |= {"MODELKEEP_DATA_DIR": str(server.data_dir), "MODELKEEP_CREATE_ADMIN_TOKEN": "false", **extra_env}
    return launch(server.data_dir, work, env, token=server.token, log_name="server-2.log")


def bench_api(reference: Path, current: Any, work: Path, args: argparse.Namespace) -> ApiResult:
    """The baseline is set through a first server, which is then stopped; everything else runs on a second one
    (same database and blobs), so what the ingestion costs in memory is not mixed with what profiling a
    1M-row reference left behind (reported on its own)."""
    result = ApiResult()
    env = {"MODELKEEP_DATABASE_URL": args.database_url} if args.database_url else {}
    if args.monitor_workers is not None:
        env["MODELKEEP_MONITOR_WORKERS"] = str(args.monitor_workers)
    first_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS)
    manifest = write_batches(current, work / "batches", first_hour)

    first = start_server(work / "data", work, extra_env=env)
    try:
        result.rss_start = proc_status(first.pid)["VmRSS"]
        hwm_reset, tree_reset = reset_hwm(first.pid), reset_tree_hwm(first.pid)
        with (
            httpx.Client(base_url=first.url, headers={"authorization": f"Bearer {first.token}"}, timeout=600) as c,
            RssSampler(first.pid, pss=True) as sampler,
        ):
            name, result.baseline_s, result.baseline_rows = set_up_model(c, reference)
        result.rss_after_baseline = proc_status(first.pid)["VmRSS"]
        result.hwm_baseline = proc_status(first.pid).get("VmHWM") if hwm_reset else None
        result.tree_peak_baseline, result.tree_pss_peak_baseline = sampler.peak, sampler.peak_pss
        result.tree_after_baseline = tree_rss(first.pid)
        result.tree_hwm_baseline = tree_hwm(first.pid) if tree_reset else None
    finally:
        stop_server(first)

    server = restart(first, work, env)
    try:
        print(f"server pid {server.pid} on {server.url}", flush=True)
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {server.token}"}, timeout=600) as c:
            read_path = f"/api/v1/models/{name}/versions/1"
            for _ in range(200):  # warm-up: connections, caches, the first queries' plans
                c.get(read_path)
            result.rss_before_ingest = proc_status(server.pid)["VmRSS"]

            print(f"reads, idle ({args.read_seconds:.0f} s)", flush=True)
            stop_at = time.perf_counter() + args.read_seconds
            result.idle = paced_reads(c, read_path, args.read_rate, lambda: time.perf_counter() >= stop_at)

            if args.paced_rate > 0:
                print(f"reads while ingesting {args.paced_rate:g} batches/s", flush=True)
                result.paced, result.paced_reads, sampler, hwm = ingest_while_reading(
                    server, c, name=name, manifest=manifest, args=args, paced=args.paced_rate
                )
                result.rss_peak_paced, result.pss_peak_paced = max(sampler.peak, hwm or 0), sampler.peak_pss

            print("reads while ingesting at full speed", flush=True)
            result.ingest, result.busy, sampler, result.hwm_ingest = ingest_while_reading(
                server, c, name=name, manifest=manifest, args=args, paced=0.0
            )
            result.rss_peak_ingest, result.pss_peak_ingest = sampler.peak, sampler.peak_pss
            result.rss_after_ingest = proc_status(server.pid)["VmRSS"]
            result.tree_after_ingest = tree_rss(server.pid)

            print(f"checks over {HOURS} hourly buckets ({args.checks} + 3 warm-up)", flush=True)
            end = (first_hour + timedelta(hours=HOURS)).isoformat()
            params = {"alias": "production", "window": f"{HOURS}h", "end": end}
            for i in range(args.checks + 3):
                t0 = time.perf_counter()
                answer = c.post(f"/api/v1/models/{name}/monitor/checks", params=params)
                elapsed = time.perf_counter() - t0
                if answer.status_code != 200:
                    raise RuntimeError(f"check failed: {answer.status_code} {answer.text}")
                if i >= 3:
                    result.checks.append(elapsed)
            found = answer.json()
    finally:
        stop_server(server)
    result.check_rows, result.check_status, result.check_drifted = found["rows"], found["status"], found["drifted"]
    window = found["window"]
    span = datetime.fromisoformat(window["end"]) - datetime.fromisoformat(window["start"])
    result.check_buckets = int(span / timedelta(hours=1))
    ingested = result.ingest["rows"] + (result.paced["rows"] if result.paced else 0)
    if found["rows"] != ingested:
        raise RuntimeError(f"the check saw {found['rows']} rows, {ingested} were ingested")
    return result


# --------------------------------------------------------------------------------------------- report


def mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:.0f} MB"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def render(meta: dict[str, str], ours: dict[str, Any], evidently: dict[str, Any] | None, api: ApiResult) -> str:
    rows = ours["rows"]
    lines = [
        f"Machine: {meta['machine']}. Load average (1/5/15 min) at start {meta['load_start']}, at end "
        f"{meta['load_end']}. {meta['versions']}.",
        "",
        f"**Profiling {rows:,} rows x {ours['columns']} columns, one core** (workers pinned to CPU 0; ours: median "
        f"and minimum of {len(ours['profile_s'])}; Evidently: one run):",
        "",
        "| | wall s (median / min) | CPU s (median) | peak RSS | drifted columns found |",
        "|---|---:|---:|---:|---|",
        f"| Modelkeep: read Parquet + conform + `profile_table` (current) | {statistics.median(ours['total_s']):.2f} / "
        f"{min(ours['total_s']):.2f} | {statistics.median(ours['cpu_s']):.2f} | {mb(ours['peak_rss_current'])} | "
        f"{', '.join(ours['drifted']) or '-'} |",
        f"| &nbsp;&nbsp;of which `profile_table` | {statistics.median(ours['profile_s']):.2f} / "
        f"{min(ours['profile_s']):.2f} | | | |",
        f"| &nbsp;&nbsp;drift check of the two profiles (`spec.check`, 25 columns) | "
        f"{statistics.median(ours['check_s']) * 1000:.1f} ms / {min(ours['check_s']) * 1000:.1f} ms | | | |",
        f"| &nbsp;&nbsp;profiling the reference (once per version, at `baseline set`) | "
        f"{ours['reference_profile_s']:.2f} | | | |",
    ]
    if evidently is not None:
        lines += [
            f"| Evidently 0.7 `DataDriftPreset` (`Dataset.from_pandas` x2 + `Report.run`) | {evidently['total_s']:.1f} "
            f"| | {mb(evidently['peak_rss'])} | {', '.join(evidently['drifted']) or '-'} |",
            f"| &nbsp;&nbsp;of which `Report.run` | {evidently['run_s']:.1f} | | | |",
        ]
    else:
        lines.append("| Evidently 0.7 `DataDriftPreset` | skipped (`--skip-evidently`) | | | |")
    lines += [
        "",
        f"Ours: methods {', '.join(ours['methods'])}; the stored profile of the current table is "
        f"{ours['profile_bytes'] / 1024:.0f} KiB; peak RSS = the worker's VmHWM while it takes in the current "
        f"table ({mb(ours['rss_before'])} before: interpreter, libraries, the reference's profile; "
        f"{mb(ours['peak_rss'])} over the worker's life, reading the reference table included)."
        + (
            f" Evidently: methods {', '.join(evidently['methods'])}; import {evidently['import_s']:.1f} s (not "
            f"counted), peak RSS with both frames loaded before the run {mb(evidently['peak_rss_before_run'])}."
            if evidently
            else ""
        ),
        "",
        f"**Through the API** (`registry serve`, one worker, {meta['database']}, `MODELKEEP_MONITOR_WORKERS` "
        f"{meta['workers']}; baseline of {api.baseline_rows:,} "
        f"rows set in {api.baseline_s:.1f} s by a first server process, everything below on a second one):",
        "",
        "| measurement | value |",
        "|---|---:|",
        f"| ingestion at full speed: {api.ingest['requests']} batches of ~{rows // (HOURS * BATCHES_PER_HOUR):,} "
        f"rows, {meta['senders']} senders, {api.ingest['seconds']:.1f} s, server at {api.ingest['server_cores']:.2f} "
        f"cores (with its workers {api.ingest['tree_cores']:.2f}) | "
        f"{api.ingest['rows'] / api.ingest['seconds']:,.0f} rows/s |",
        f"| &nbsp;&nbsp;the first {rows:,} rows (48 batches over 24 hours) | {api.ingest['first_round_s']:.1f} s |",
        f"| &nbsp;&nbsp;batch latency p50 / p99 | {ms(api.ingest['batch_p50_s'])} / "
        f"{ms(api.ingest['batch_p99_s'])} ms |",
        f"| check over {api.check_buckets} hourly buckets ({api.check_rows:,} rows): median / p99 of "
        f"{len(api.checks)} | {ms(statistics.median(api.checks))} / {ms(percentile(api.checks, 0.99))} ms |",
        f"| first server process alone: RSS at start / after the baseline / VmHWM during it | "
        f"{mb(api.rss_start)} / {mb(api.rss_after_baseline)} / {mb(api.hwm_baseline)} |",
        f"| &nbsp;&nbsp;with its profiling workers during the baseline: sum of VmHWM / peak RSS sum / peak PSS sum "
        f"(sampled) / RSS sum after | {mb(api.tree_hwm_baseline)} / {mb(api.tree_peak_baseline)} / "
        f"{mb(api.tree_pss_peak_baseline)} / {mb(api.tree_after_baseline)} |",
        f"| second server process: RSS before ingesting / VmHWM while ingesting at full speed / RSS after | "
        f"{mb(api.rss_before_ingest)} / {mb(api.hwm_ingest)} / {mb(api.rss_after_ingest)} |",
        f"| &nbsp;&nbsp;with its profiling workers at full speed: sum of VmHWM / peak RSS sum / peak PSS sum (sampled) "
        f"/ RSS sum after | {mb(api.ingest.get('tree_hwm'))} / {mb(api.rss_peak_ingest)} / {mb(api.pss_peak_ingest)} "
        f"/ {mb(api.tree_after_ingest)} |",
        f"| `GET .../versions/1` idle: p50 / p99 ({len(api.idle.latencies)} reads) | {ms(api.idle.p50)} / "
        f"{ms(api.idle.p99)} ms |",
    ]
    if api.paced is not None:
        rate = api.paced["rows"] / api.paced["seconds"]
        lines += [
            f"| `GET` while ingesting {rate:,.0f} rows/s ({api.paced['requests']} batches, server at "
            f"{api.paced['server_cores']:.2f} cores, with its workers {api.paced['tree_cores']:.2f}, RSS / PSS peak "
            f"{mb(api.rss_peak_paced)} / "
            f"{mb(api.pss_peak_paced)}): p50 / p99 "
            f"({len(api.paced_reads.latencies)} reads) | "
            f"{ms(api.paced_reads.p50)} / {ms(api.paced_reads.p99)} ms |",
            f"| &nbsp;&nbsp;read p99 vs idle | {api.paced_reads.p99 / api.idle.p99 - 1:+.0%} |",
        ]
    lines += [
        f"| `GET` while ingesting at full speed: p50 / p99 ({len(api.busy.latencies)} reads) | {ms(api.busy.p50)} / "
        f"{ms(api.busy.p99)} ms |",
        f"| &nbsp;&nbsp;read p99 vs idle | {api.busy.p99 / api.idle.p99 - 1:+.0%} |",
    ]
    errors = api.idle.errors + api.busy.errors + api.paced_reads.errors
    batch_errors = api.ingest["errors"] + (api.paced["errors"] if api.paced else 0)
    if errors or batch_errors:
        lines.append(f"\nErrors: {errors} reads, {batch_errors} batches.")
    return "\n".join(lines) + "\n"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("numpy", "pyarrow", "datasketches", "scipy", "pandas", "evidently"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        kind, rest = argv[1], argv[2:]
        if kind == "profile":
            found = worker_profile(Path(rest[0]), Path(rest[1]), int(rest[2]))
        elif kind == "evidently":
            found = worker_evidently(Path(rest[0]), Path(rest[1]))
        else:
            found = worker_ingest(
                rest[0], rest[1], rest[2], Path(rest[3]), int(rest[4]), float(rest[5]), float(rest[6])
            )
        print(json.dumps(found))
        return 0

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the reference and of the current table")
    parser.add_argument("--repeats", type=int, default=3, help="profiling repetitions (median and minimum)")
    parser.add_argument("--skip-evidently", action="store_true", help="leave Evidently out (minutes, ~2 GB)")
    parser.add_argument("--checks", type=int, default=50, help="timed drift checks over 24 buckets")
    parser.add_argument("--read-rate", type=float, default=100.0, help="reads per second (idle and while ingesting)")
    parser.add_argument("--read-seconds", type=float, default=20.0, help="seconds of reads, idle and while ingesting")
    parser.add_argument("--senders", type=int, default=2, help="concurrent ingestion connections at full speed")
    parser.add_argument(
        "--paced-rate", type=float, default=1.0, help="batches/s of the paced ingestion phase (0 skips it)"
    )
    parser.add_argument("--database-url", default=None, help="an empty database for the server (default: SQLite)")
    parser.add_argument(
        "--monitor-workers",
        type=int,
        default=None,
        help="MODELKEEP_MONITOR_WORKERS of the servers (default: the server's own default; 0 profiles in-process)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the work folder (default: temp)")
    parser.add_argument("--markdown-out", type=Path, default=None, help="also write the Markdown report here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (data, server log, database)")
    args = parser.parse_args(argv)

    parent = args.workdir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="modelkeep-bench-monitoring-", dir=parent))
    meta = {
        "machine": f"{os.cpu_count()} CPUs, {mem_total()} RAM, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        "load_start": load(),
        "versions": versions(),
        "senders": str(args.senders),
        "database": "PostgreSQL" if (args.database_url or "").startswith("postgres") else "SQLite",
        "workers": "the default" if args.monitor_workers is None else str(args.monitor_workers),
    }
    print(f"work folder {work} (load {meta['load_start']})", flush=True)
    try:
        print(f"data: 2 x {args.rows:,} rows x 25 columns", flush=True)
        reference, current = work / "reference.parquet", work / "current.parquet"
        write_parquet(make_table(args.rows, 1, drifted=False), reference)
        current_table = make_table(args.rows, 2, drifted=True)
        write_parquet(current_table, current)

        print("profiling on one core", flush=True)
        ours = run_worker(["profile", str(reference), str(current), str(args.repeats)], timeout=1800)
        evidently = None
        if not args.skip_evidently:
            print("Evidently DataDriftPreset on one core (minutes)", flush=True)
            evidently = run_worker(["evidently", str(reference), str(current)], timeout=3600)

        api = bench_api(reference, current_table, work, args)
        meta["load_end"] = load()
        report = render(meta, ours, evidently, api)
        print()
        print(report)
        if args.markdown_out:
            args.markdown_out.write_text(report)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
