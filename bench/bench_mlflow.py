# ruff: noqa: RUF002
"""Load harness for the MLflow-compatible API: Modelkeep vs MLflow's own server, same machine, same backend.

For each backend (SQLite, PostgreSQL) it starts, side by side, MLflow's server (``mlflow server`` from a
separate venv, ``bench/.mlflow-venv``, created here on first use; never a Modelkeep dependency) and
``registry serve``, each on its own fresh database (SQLite file, or a new PostgreSQL database that is dropped
afterwards) and artifact folder; seeds both identically over HTTP; then runs every workload at every
concurrency against MLflow and then Modelkeep, back to back, so drift in machine load hits both alike:

* ``health``           GET /health (baseline, no target)
* ``get-run``          GET runs/get on a run with 1,000 metric points (100 keys × 10 steps)
* ``search-versions``  GET model-versions/search?filter=name='<m>' over a model with 1,000 versions
                       (no max_results: the server default, 10,000 in MLflow; all versions in one page)
* ``alias-get``        GET registered-models/alias
* ``alias-set``        POST registered-models/alias (moves alias ``bench`` across versions 1..100)
* ``create-version``   POST model-versions/create (source runs:/<run>/model; all connections, one model)
* ``log-batch``        POST runs/log-batch with 100 metrics (connection i logs to run i)

Load: a closed loop over raw HTTP/1.1 keep-alive connections (``mlflow_harness/httpload.py``), one connection
per concurrent client, warm-up then ``--duration`` seconds recorded per (workload, concurrency, server).
The client's own ceiling is measured first against a do-nothing server and reported. Everything is killed
and deleted at the end (``--keep`` keeps the work folder).

    .venv/bin/python bench/bench_mlflow.py [--quick] [--backends sqlite,postgres] [--servers mlflow,modelkeep]
        [--concurrency 1,8,32] [--duration 10] [--versions 1000] [--postgres-url URL]
        [--modelkeep-url URL --modelkeep-token T] [--markdown-out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlflow_harness import servers as srv
from mlflow_harness.httpload import Client, HttpFailure, PhaseResult, RequestBuilder, run_phase
from mlflow_harness.report import BackendRun, render
from mlflow_harness.workloads import Workload, check_shape, seed, workloads

try:
    import uvloop

    arun = uvloop.run
except ImportError:  # pragma: no cover
    arun = asyncio.run

REPO = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 100 versions, 1.5 s phases")
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--servers", default="mlflow,modelkeep")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--workloads", default="health,get-run,search-versions,alias-get,alias-set,create-version,log-batch")
    p.add_argument("--duration", type=float, help="recorded seconds per phase (default 10; quick 1.5)")
    p.add_argument("--warmup", type=float, help="unrecorded warm-up seconds per phase (default 2; quick 0.5)")
    p.add_argument("--versions", type=int, help="versions of the searched model (default 1000; quick 100)")
    p.add_argument("--points", type=int, default=1000, help="metric points of the get-run run")
    p.add_argument("--metric-keys", type=int, default=100, help="distinct keys among those points")
    p.add_argument(
        "--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    p.add_argument("--mlflow-venv", type=Path, default=REPO / "bench" / ".mlflow-venv")
    p.add_argument("--mlflow-workers", type=int, help="default: MLflow's own default (4)")
    p.add_argument("--modelkeep-workers", type=int, help="default: registry serve's default (1)")
    p.add_argument("--modelkeep-url", help="reuse a running Modelkeep (its backend is read from /health)")
    p.add_argument("--modelkeep-token", default=os.environ.get("MODELKEEP_TOKEN"))
    p.add_argument("--workdir", type=Path, help="parent of the temporary work folder (default bench/.work)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (server logs, SQLite files)")
    p.add_argument("--no-ceiling", action="store_true", help="skip the client-ceiling measurement")
    p.add_argument("--markdown-out", type=Path)
    a = p.parse_args(argv)
    a.duration = a.duration or (1.5 if a.quick else 10.0)
    a.warmup = a.warmup if a.warmup is not None else (0.5 if a.quick else 2.0)
    a.versions = a.versions or (100 if a.quick else 1000)
    a.backends = [b.strip() for b in a.backends.split(",") if b.strip()]
    a.servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    a.concurrency = [int(c) for c in a.concurrency.split(",")]
    a.workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    for b in a.backends:
        if b not in ("sqlite", "postgres"):
            p.error(f"unknown backend {b!r}")
    for s in a.servers:
        if s not in ("mlflow", "modelkeep"):
            p.error(f"unknown server {s!r}")
    if a.modelkeep_url:
        host = urlsplit(a.modelkeep_url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            p.error("--modelkeep-url must be a loopback address")
    return a


def machine_info() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    vm = psutil.virtual_memory()
    return {
        "machine": f"{model}, {os.cpu_count()} logical CPUs, {vm.total / 2**30:.1f} GiB RAM, {platform.platform()}",
        "python": f"{platform.python_version()} (client and Modelkeep)",
        "Modelkeep code": _git_state(),
    }


def _git_state() -> str:
    try:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "registry", "automations"],
            capture_output=True,
            text=True,
        )
    except OSError:
        return "?"
    changed = len([line for line in dirty.stdout.splitlines() if line.strip()])
    return f"git {sha.stdout.strip()}" + (
        f" + {changed} uncommitted file(s) under registry/, automations/" if changed else ""
    )


async def ceiling_phases(null: srv.Server, args: argparse.Namespace) -> list[tuple[str, PhaseResult]]:
    b = RequestBuilder(null.host, null.port)
    req = b.get("/health")
    out = []
    for c in args.concurrency:
        res = await run_phase(null.host, null.port, lambda w, q: req, c, args.duration, args.warmup)
        log(f"  null server c={c}: {res.throughput:,.0f} req/s p99 {res.pct(99):.2f} ms")
        out.append(("null server", res))
    return out


async def run_backend(run: BackendRun, servers: list[srv.Server], args: argparse.Namespace) -> None:
    tag = f"b{uuid.uuid4().hex[:8]}"
    per_server: dict[str, tuple[srv.Server, RequestBuilder, list]] = {}
    for s in servers:
        b = RequestBuilder(s.host, s.port, s.token)
        client = Client(b)
        log(f"seeding {s.name} ({run.backend}): {args.versions} versions, {args.points} metric points")
        try:
            sd = await seed(
                client,
                tag,
                versions=args.versions,
                points=args.points,
                metric_keys=args.metric_keys,
                log_runs=max(args.concurrency),
                progress=log,
            )
        except HttpFailure as exc:
            run.problems.setdefault(s.name, {})["seed"] = str(exc)
            log(f"  seeding {s.name} failed: {exc}")
            client.close()
            continue
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            run.problems.setdefault(s.name, {})["seed"] = f"{type(exc).__name__}: {exc}"
            log(f"  seeding {s.name} failed: {exc}")
            client.close()
            continue
        run.seed_s[s.name] = sd.seconds
        wls = {w.name: w for w in workloads(b, sd)}
        health = b.get("/health")
        wls["health"] = Workload("health", "GET /health", lambda w, q, r=health: r, lambda d: None)
        for name, wl in wls.items():
            if name == "health":
                continue
            problem = await check_shape(client, wl)
            if problem:
                run.problems.setdefault(s.name, {})[name] = problem
                log(f"  {s.name} {name}: {problem}")
        client.close()
        per_server[s.name] = (s, b, [wls[w] for w in args.workloads if w in wls])
    busy = srv.settle()
    run.loadavg_start = os.getloadavg()
    log(f"settled (CPU {busy:.0f}%), load average {run.loadavg_start}")
    for wname in args.workloads:
        for i, c in enumerate(args.concurrency):
            order = ("mlflow", "modelkeep") if i % 2 == 0 else ("modelkeep", "mlflow")  # alternate who goes first
            for sname in order:
                if sname not in per_server:
                    continue
                s, _, wls = per_server[sname]
                wl = next((w for w in wls if w.name == wname), None)
                if wl is None or (wname != "health" and wname in run.problems.get(sname, {})):
                    continue
                run.labels[wname] = wl.label
                res = await run_phase(s.host, s.port, wl.make, c, args.duration, args.warmup, server_cpu=s.cpu_seconds)
                run.put(wname, sname, res)
                log(
                    f"  {run.backend} {wname:16s} c={c:<3d} {sname:9s} {res.throughput:9,.1f} req/s  "
                    f"p50 {res.pct(50):8.2f}  p99 {res.pct(99):8.2f} ms  err {res.errors}"
                )
                await asyncio.sleep(0.3)
    run.loadavg_end = os.getloadavg()
    for s in servers:
        run.rss_mb[s.name] = s.rss_mb()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parent = args.workdir or (REPO / "bench" / ".work")
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mlflow-bench-", dir=parent))
    live: list[srv.Server] = []
    pg = srv.Postgres(args.postgres_url)
    meta_setup = machine_info()
    runs: list[BackendRun] = []
    ceiling: list[tuple[str, PhaseResult]] = []
    n = 0
    try:
        mlflow_bin = None
        if "mlflow" in args.servers:
            mlflow_bin = srv.ensure_mlflow_venv(args.mlflow_venv, log)
            venv = args.mlflow_venv.relative_to(REPO) if args.mlflow_venv.is_relative_to(REPO) else args.mlflow_venv
            meta_setup["MLflow server"] = (
                f"{srv.mlflow_version(mlflow_bin)} from `{venv}`: `mlflow server --backend-store-uri "
                f"<db> --artifacts-destination <dir> --host 127.0.0.1 --port <p>`"
                + (
                    f" --workers {args.mlflow_workers}"
                    if args.mlflow_workers
                    else ", default worker count (4 uvicorn workers → FastAPI → Flask WSGI, plus its job runner and "
                    "huey consumers)"
                )
                + ", telemetry off (`MLFLOW_DISABLE_TELEMETRY=true`), other settings default (per-request access log"
                " on, as shipped)"
            )
        backends = args.backends
        reuse = None
        if "modelkeep" in args.servers:
            if args.modelkeep_url:
                parts = urlsplit(args.modelkeep_url)
                reuse = srv.Server(
                    "modelkeep",
                    parts.hostname or "127.0.0.1",
                    parts.port or 80,
                    token=args.modelkeep_token,
                    workers="external",
                )
                health = arun(
                    Client(RequestBuilder(reuse.host, reuse.port, reuse.token)).ok(
                        RequestBuilder(reuse.host, reuse.port).get("/health")
                    )
                )
                db = "postgres" if str(health.get("database", "")).startswith("postgres") else "sqlite"
                backends = [db]
                log(f"reusing Modelkeep at {args.modelkeep_url} ({db}); only that backend is run")
                meta_setup["Modelkeep"] = f"external server {args.modelkeep_url} ({db})"
            else:
                w = args.modelkeep_workers
                meta_setup["Modelkeep"] = (
                    "`registry serve --host 127.0.0.1 --port <p> --data-dir <dir>` (+ `MODELKEEP_DATABASE_URL` for "
                    f"PostgreSQL), {f'--workers {w}' if w else 'default worker count (1 uvicorn worker)'}"
                )
        if "postgres" in backends:
            meta_setup["PostgreSQL"] = f"{pg.server_version()} at {urlsplit(args.postgres_url).netloc} (local)"
        meta_setup["load"] = (
            f"closed loop, concurrency {', '.join(map(str, args.concurrency))} (one keep-alive "
            f"connection each); per phase {args.warmup:g} s warm-up + {args.duration:g} s recorded; "
            f"{args.versions} versions in the searched model; get-run run with {args.points} metric "
            f"points over {args.metric_keys} keys; log-batch 100 metrics per call"
        )
        meta_setup["load average at start"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())

        if not args.no_ceiling:
            log("client ceiling against a do-nothing server")
            null = srv.start_null_server(work / "null")
            live.append(null)
            try:
                ceiling = arun(ceiling_phases(null, args))
            finally:
                null.stop()
                live.remove(null)

        for backend in backends:
            run = BackendRun("PostgreSQL" if backend == "postgres" else "SQLite")
            runs.append(run)
            started: list[srv.Server] = []
            for name in ("mlflow", "modelkeep"):
                if name not in args.servers:
                    continue
                if name == "modelkeep" and reuse is not None:
                    started.append(reuse)
                    continue
                n += 1
                d = work / f"{backend}-{name}-{n}"
                if backend == "postgres":
                    url = pg.create(f"bench_{'mlflow' if name == 'mlflow' else 'mk'}_{os.getpid()}_{n}")
                else:
                    d.mkdir(parents=True)
                    url = f"sqlite:///{d / ('mlflow.db' if name == 'mlflow' else 'registry.db')}"
                if name == "mlflow":
                    assert mlflow_bin is not None
                    s = srv.start_mlflow(mlflow_bin, url, d, args.mlflow_workers)
                else:
                    s = srv.start_modelkeep(
                        REPO / ".venv" / "bin" / "registry",
                        url if backend == "postgres" else None,
                        d,
                        args.modelkeep_workers,
                    )
                live.append(s)
                started.append(s)
            log(f"{run.backend}: starting " + ", ".join(f"{s.name} on {s.url}" for s in started))
            for s in started:
                srv.wait_ready(s)
            arun(run_backend(run, started, args))
            for s in started:
                if s.proc is not None:
                    s.stop()
                    live.remove(s)
            pg.drop_all()
    finally:
        for s in live:
            s.stop()
        pg.drop_all()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    meta_setup["load average at end"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    cmd = "python bench/bench_mlflow.py " + " ".join(sys.argv[1:] if argv is None else argv)
    meta = {"command": cmd.strip(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "setup": meta_setup}
    md = render(meta, ceiling, runs, args.servers)
    print(md)
    if args.markdown_out:
        args.markdown_out.parent.mkdir(parents=True, exist_ok=True)
        args.markdown_out.write_text(md)
        log(f"wrote {args.markdown_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
