"""Webhook delivery throughput and event-to-delivery latency, against a real ``registry serve`` process.

For each backend (PostgreSQL by default, SQLite for reference) the bench makes a fresh database, starts the
server with its default delivery settings (only ``MODELKEEP_WEBHOOK_ALLOW_HOSTS=127.0.0.1,localhost``, so it may send
to loopback), starts ``--receivers`` fast receivers (asyncio HTTP/1.1 servers answering 200 at once, in a
separate process so they do not share the bench's interpreter), subscribes each to ``alias.moved``, and then:

* **drain**: with the dispatcher of a first server disabled, ``--events`` alias moves (a distinct alias each,
  so one event each) are written to the outbox; a second server with the dispatcher on is started and
  delivers the whole backlog. Deliveries/s = deliveries / (last arrival - first arrival): the dispatcher's
  capacity, not limited by how fast the API can create events.
* **live**: the dispatcher runs while ``--events`` more moves are made through the API by ``--clients``
  concurrent clients. Latency = arrival time at the receiver - the event's ``timestamp`` (when the event row
  was written, before its transaction committed); p50/p99/max over every delivery. Deliveries/s here is
  bounded by the event rate the API sustains, which is reported beside it.

A last section measures the sender alone, without any database: ``httpx.AsyncClient`` configured as the
dispatcher configures it (pool of 64, 64 requests in flight) posting to the same receivers, and a bare asyncio
HTTP/1.1 keep-alive client for comparison, so the table shows how much of the ceiling is the HTTP client.

Every request is verified afterwards (not in the timed path) with the ``standardwebhooks`` library, and
duplicates are counted per (receiver, webhook-id). Prints a Markdown table and writes it to ``--out``.

    .venv/bin/python bench/bench_webhooks.py [--backends postgres,sqlite] [--events 2000] [--receivers 4]
        [--clients 16] [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--out bench/results/webhooks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH: an A/B run's other tree must win

Record = tuple[int, float, bytes, dict[str, str]]
"""(receiver port, arrival time.time(), body, webhook headers)"""


# -- receivers (a child process) ----------------------------------------------------------------------------
async def _serve_receivers(ports: list[int], conn: Connection) -> None:
    records: list[Record] = []

    def handler(port: int) -> Any:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    headers: dict[str, str] = {}
                    for line in head.decode("latin-1").split("\r\n")[1:]:
                        key, sep, value = line.partition(":")
                        if sep:
                            headers[key.strip().lower()] = value.strip()
                    body = await reader.readexactly(int(headers.get("content-length", "0")))
                    records.append((port, time.time(), body, {k: v for k, v in headers.items() if "webhook" in k}))
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        return handle

    servers = [await asyncio.start_server(handler(p), "127.0.0.1", p, backlog=1024) for p in ports]
    conn.send("ready")
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "dump":
            conn.send(records)
            records = []
        elif command == "count":
            conn.send(len(records))
        else:
            break
    for server in servers:
        server.close()


def _receiver_main(ports: list[int], conn: Connection) -> None:
    asyncio.run(_serve_receivers(ports, conn))


class Receivers:
    def __init__(self, count: int) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.conn, child = mp.Pipe()
        self.process = mp.get_context("spawn").Process(target=_receiver_main, args=(self.ports, child), daemon=True)
        self.process.start()
        assert self.conn.recv() == "ready"

    def count(self) -> int:
        self.conn.send("count")
        return int(self.conn.recv())

    def dump(self) -> list[Record]:
        self.conn.send("dump")
        return list(self.conn.recv())

    def close(self) -> None:
        self.conn.send("stop")
        self.process.join(timeout=10)


# -- the server and its database ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _pg(admin_url: str, sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(admin_url)
    conn = await asyncpg.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username or "postgres",
        password=u.password,
        database=u.database or "postgres",
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fresh_database(backend: str, work: Path, pg_url: str) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{work / 'registry.db'}", None
    from sqlalchemy.engine import make_url

    name = f"mk_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(pg_url, f'CREATE DATABASE "{name}"'))
    return make_url(pg_url).set(database=name).render_as_string(hide_password=False), name


def make_token(database_url: str) -> str:
    from registry import migrations
    from registry.db import Database
    from registry.domain.auth import Role
    from registry.services import tokens
    from registry.services.auth import Actor

    async def main() -> str:
        db = Database(database_url)
        try:
            await migrations.upgrade(db)
            async with db.write() as session:
                made = await tokens.create(
                    session, name="bench", role=Role.admin, actor=Actor(name="bench", role=Role.admin)
                )
            return made.secret
        finally:
            await db.dispose()

    return asyncio.run(main())


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def serve(database_url: str, work: Path, *, dispatcher: bool, name: str) -> Server:
    port = free_port()
    log = work / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env.update(
        MODELKEEP_DATABASE_URL=database_url,
        MODELKEEP_DATA_DIR=str(work),
        MODELKEEP_CREATE_ADMIN_TOKEN="false",
        MODELKEEP_WEBHOOK_ALLOW_HOSTS="127.0.0.1,localhost",
        MODELKEEP_DISPATCHER_ENABLED="true" if dispatcher else "false",
        MODELKEEP_INSTANCE_NAME=name,
    )
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "registry", "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=work,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return Server(url, process, log)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


# -- the workload -------------------------------------------------------------------------------------------
def setup_model(server: Server, token: str, receivers: Receivers) -> tuple[str, dict[int, str]]:
    """A model with one version, and every receiver subscribed to its alias moves; returns secrets by port."""
    model = f"bench-{uuid.uuid4().hex[:8]}"
    secrets: dict[int, str] = {}
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=60) as api:
        for port in receivers.ports:
            hook = api.post(
                "/api/v1/webhooks",
                json={"url": f"http://127.0.0.1:{port}/hook", "events": ["alias.moved"], "model": model},
            )
            hook.raise_for_status()
            secrets[port] = hook.json()["secret"]
        api.post("/api/v1/models", json={"name": model}).raise_for_status()
        run = api.post("/api/v1/runs", json={}).json()
        api.put(f"/api/v1/runs/{run['id']}/artifacts/model.bin", content=b"weights").raise_for_status()
        api.post(f"/api/v1/models/{model}/versions", json={"run_id": run["id"], "path": "model.bin"}).raise_for_status()
    return model, secrets


async def make_events(server: Server, token: str, model: str, aliases: list[str], clients: int) -> float:
    """Move each alias once, ``clients`` requests at a time; returns the wall time taken."""
    queue = list(reversed(aliases))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=server.url, headers={"authorization": f"Bearer {token}"}, limits=limits, timeout=120
    ) as api:

        async def worker() -> None:
            while queue:
                alias = queue.pop()
                response = await api.put(f"/api/v1/models/{model}/aliases/{alias}", json={"version": 1})
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started


def wait_for(receivers: Receivers, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while receivers.count() < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {receivers.count()} of {expected} deliveries arrived in {timeout:g}s")
        time.sleep(0.05)


@dataclass
class Phase:
    backend: str
    phase: str
    events: int
    deliveries: int
    duplicates: int
    invalid: int
    seconds: float
    per_second: float
    event_rate: float | None
    p50_ms: float
    p99_ms: float
    max_ms: float


def analyse(
    backend: str, phase: str, records: list[Record], secrets: dict[int, str], events: int, event_rate: float | None
) -> Phase:
    from standardwebhooks import Webhook, WebhookVerificationError

    seen: set[tuple[int, str]] = set()
    duplicates = invalid = 0
    latencies: list[float] = []
    for port, at, body, headers in records:
        try:
            Webhook(secrets[port]).verify(body, headers)
        except WebhookVerificationError:
            invalid += 1
        key = (port, headers.get("webhook-id", ""))
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        stamp = datetime.fromisoformat(json.loads(body)["timestamp"].replace("Z", "+00:00")).timestamp()
        latencies.append((at - stamp) * 1000)
    arrivals = sorted(r[1] for r in records)
    span = arrivals[-1] - arrivals[0]
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return Phase(
        backend,
        phase,
        events,
        len(records),
        duplicates,
        invalid,
        span,
        len(records) / span,
        event_rate,
        quantiles[49],
        quantiles[98],
        max(latencies),
    )


def bench_backend(backend: str, args: argparse.Namespace, receivers: Receivers) -> list[Phase]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-webhooks-{backend}-"))
    database_url, pg_name = fresh_database(backend, work, args.pg_url)
    servers: list[Server] = []
    try:
        token = make_token(database_url)
        writer = serve(database_url, work, dispatcher=False, name="writer")
        servers.append(writer)
        model, secrets = setup_model(writer, token, receivers)
        expected = args.events * len(receivers.ports)

        # Drain: the outbox holds the whole burst before any dispatcher runs.
        asyncio.run(make_events(writer, token, model, [f"d{i:05d}" for i in range(args.events)], args.clients))
        writer.stop()
        servers.remove(writer)
        receivers.dump()
        dispatcher = serve(database_url, work, dispatcher=True, name="dispatcher")
        servers.append(dispatcher)
        wait_for(receivers, expected, timeout=600)
        time.sleep(1)
        drain = analyse(backend, "drain (backlog)", receivers.dump(), secrets, args.events, None)

        # Live: events made while the dispatcher runs.
        took = asyncio.run(
            make_events(dispatcher, token, model, [f"l{i:05d}" for i in range(args.events)], args.clients)
        )
        wait_for(receivers, expected, timeout=600)
        time.sleep(1)
        live = analyse(backend, "live burst", receivers.dump(), secrets, args.events, args.events / took)
        return [drain, live]
    finally:
        for server in servers:
            server.stop()
        if pg_name:
            asyncio.run(_pg(args.pg_url, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        shutil.rmtree(work, ignore_errors=True)


# -- the sender alone ---------------------------------------------------------------------------------------
BODY = b'{"type":"alias.moved","timestamp":"2026-01-01T00:00:00Z","id":"evt_x","data":{"model":"m"}}' * 4


async def _httpx_ceiling(ports: list[int], total: int, pool: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    gate = asyncio.Semaphore(64)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as http:

        async def one(i: int) -> None:
            async with gate:
                response = await http.post(
                    f"http://127.0.0.1:{ports[i % len(ports)]}/hook",
                    content=BODY,
                    headers={"webhook-id": f"c{i}"},
                    timeout=15,
                    follow_redirects=False,
                )
                response.raise_for_status()

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(total)))
        return total / (time.perf_counter() - started), (time.process_time() - cpu) / total * 1000


async def _raw_ceiling(ports: list[int], total: int, connections: int) -> tuple[float, float]:
    todo = list(range(total))

    async def connection(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while todo:
            i = todo.pop()
            head = f"POST /hook HTTP/1.1\r\nhost: 127.0.0.1\r\nwebhook-id: r{i}\r\ncontent-length: {len(BODY)}\r\n\r\n"
            writer.write(head.encode() + BODY)
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(connection(ports[k % len(ports)]) for k in range(connections)))
    return total / (time.perf_counter() - started), (time.process_time() - cpu) / total * 1000


def sender_ceiling(receivers: Receivers, total: int) -> list[tuple[str, float, float]]:
    rows = []
    for label, run in (
        ("httpx.AsyncClient, pool 64 (as the dispatcher)", lambda: _httpx_ceiling(receivers.ports, total, 64)),
        ("httpx.AsyncClient, pool 8", lambda: _httpx_ceiling(receivers.ports, total, 8)),
        ("bare asyncio streams, 16 keep-alive connections", lambda: _raw_ceiling(receivers.ports, total, 16)),
    ):
        rate, cpu_ms = asyncio.run(run())
        receivers.dump()
        rows.append((label, rate, cpu_ms))
    return rows


def render(
    phases: list[Phase], ceiling: list[tuple[str, float, float]], meta: dict[str, str], args: argparse.Namespace
) -> str:
    lines = [
        "# Webhook delivery benchmark",
        "",
        f"`bench/bench_webhooks.py --events {args.events} --receivers {args.receivers} --clients {args.clients}`"
        f" — {meta['when']}",
        "",
        f"Machine: {meta['machine']}; load before: `{meta['load_before']}`; after: `{meta['load_after']}`.",
        "Server: one `registry serve` process, default delivery settings (concurrency 64, poll 0.5 s), "
        f"`alias.moved` events, {args.receivers} loopback receivers answering 200 at once (each event → "
        f"{args.receivers} deliveries). Latency = arrival - event `timestamp`; all requests verified with "
        "`standardwebhooks` after the run.",
        "",
        "| backend | phase | events | deliveries | dup | invalid | span s | deliveries/s | API events/s "
        "| p50 ms | p99 ms | max ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in phases:
        rate = f"{p.event_rate:.0f}" if p.event_rate else "-"
        latency = (
            ("-", "-", "-")
            if p.phase.startswith("drain")
            else (f"{p.p50_ms:.0f}", f"{p.p99_ms:.0f}", f"{p.max_ms:.0f}")
        )
        lines.append(
            f"| {p.backend} | {p.phase} | {p.events} | {p.deliveries} | {p.duplicates} | {p.invalid} "
            f"| {p.seconds:.2f} | **{p.per_second:.0f}** | {rate} | {latency[0]} | {latency[1]} | {latency[2]} |"
        )
    lines += ["", "Targets: ≥ 500 deliveries/s; p99 < 1 s with healthy receivers.", ""]
    if ceiling:
        lines += [
            f"Sender alone (no database, no server; {args.ceiling} POSTs to the same receivers from the bench "
            "process):",
            "",
            "| client | requests/s | CPU ms/request |",
            "|---|---:|---:|",
            *(f"| {label} | {rate:.0f} | {cpu:.2f} |" for label, rate, cpu in ceiling),
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--receivers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--pg-url", default=os.environ.get("MODELKEEP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--ceiling", type=int, default=3000, help="requests for the sender-alone rows (0: skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "webhooks.md")
    args = parser.parse_args()
    meta = {
        "when": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.release()}",
        "load_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    receivers = Receivers(args.receivers)
    phases: list[Phase] = []
    ceiling: list[tuple[str, float, float]] = []
    try:
        for backend in args.backends.split(","):
            phases += bench_backend(backend.strip(), args, receivers)
        if args.ceiling:
            ceiling = sender_ceiling(receivers, args.ceiling)
    finally:
        receivers.close()
    meta["load_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    table = render(phases, ceiling, meta, args)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
