"""Hot path, in process: SQL statements and CPU per request for each hot write and read, and the dispatcher's
share.

The app runs in this process (Litestar over httpx's ASGI transport, no sockets), on a fresh SQLite file or a
new PostgreSQL database ``bench_wp_<pid>`` next to ``--postgres-url`` (dropped at the end). Per workload:

* the statements one request sends (SQLAlchemy's engine log), and those of the dispatcher round its commit
  wakes (``Dispatcher.tick(scope="events")``, as the server's loop runs it);
* CPU per request (``time.process_time``: every thread of this process, so aiosqlite's thread too, and the
  httpx client's share, ~1 ms here: compare rows, not absolute numbers against ``bench_mlflow.py``), over
  ``--requests`` requests, without and with that dispatcher round after each, and the CPU of an idle poll
  (``scope="probe"``).

PostgreSQL's own CPU is not counted (another process); ``bench_mlflow.py`` measures the served path.
To compare with another tree, run this file with ``PYTHONPATH=<that tree>`` from outside the repository
(from its root, the current directory would come first on ``sys.path``); a tree whose dispatcher has no
round scopes runs its one kind of round in both places.

    .venv/bin/python bench/bench_write_path.py [--backends sqlite,postgres] [--requests 300] [--profile create-version]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import os
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from bench_webhooks import _pg as pg_admin_sql  # CREATE/DROP DATABASE next to --postgres-url
from sqlalchemy.engine import make_url

from automations.dispatcher import Dispatcher
from registry.api.app import create_app
from registry.db import Database
from registry.domain.auth import Role
from registry.migrations import upgrade
from registry.services import tokens
from registry.services.auth import Actor
from registry.settings import Settings
from registry.storage.local import LocalBlobStore

API = "/api/2.0/mlflow"


class Statements(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if not text.startswith(("[", "{", "(")):  # parameters and cache notes, not statements
            self.seen.append(" ".join(text.split()))


async def tick(dispatcher: Dispatcher, scope: str) -> None:
    try:
        await dispatcher.tick(scope=scope)  # type: ignore[arg-type]
    except TypeError:  # a tree from before the dispatcher had scopes (A/B runs): its one kind of round
        await dispatcher.tick()


async def bench(url: str, data_dir: Path, args: argparse.Namespace) -> list[str]:
    db = Database(url)
    await upgrade(db)
    admin = Actor(name="bench", role=Role.admin)
    async with db.write() as session:
        secret = (await tokens.create(session, name=f"bench-{os.getpid()}", role=Role.admin, actor=admin)).secret
    settings = Settings(data_dir=data_dir, database_url=url, create_admin_token=False)
    store = LocalBlobStore(data_dir / "blobs")
    app = create_app(settings, db=db, store=store)
    dispatcher = Dispatcher(db, store, settings)
    out: list[str] = []
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://registry", headers=headers) as client:

        async def post(path: str, body: dict[str, Any]) -> None:
            response = await client.post(API + path, json=body)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")

        experiment = (await client.post(API + "/experiments/create", json={"name": "wp"})).json()["experiment_id"]
        run = (await client.post(API + "/runs/create", json={"experiment_id": experiment})).json()["run"]["info"]
        run_id = run["run_id"]
        put = await client.put(
            f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/model/model.bin", content=b"m" * 64
        )
        put.raise_for_status()
        await post("/registered-models/create", {"name": "wp"})
        create = {"name": "wp", "source": f"runs:/{run_id}/model", "run_id": run_id}
        for _ in range(3):
            await post("/model-versions/create", create)
        await post("/registered-models/alias", {"name": "wp", "alias": "a", "version": "1"})
        metrics = [{"key": f"m{k:03d}", "value": 1.0, "timestamp": 1, "step": 1} for k in range(100)]
        workloads: dict[str, Callable[[int], Awaitable[Any]]] = {
            "create-version": lambda i: post("/model-versions/create", create),
            "alias-set": lambda i: post(
                "/registered-models/alias", {"name": "wp", "alias": "a", "version": str(1 + i % 3)}
            ),
            "alias-get": lambda i: client.get(API + "/registered-models/alias", params={"name": "wp", "alias": "a"}),
            "log-batch (100 metrics)": lambda i: post("/runs/log-batch", {"run_id": run_id, "metrics": metrics}),
            "get-run": lambda i: client.get(API + "/runs/get", params={"run_id": run_id}),
            "search-versions": lambda i: client.get(
                API + "/model-versions/search", params={"filter": "name='wp'"}
            ),
            "health": lambda i: client.get("/health"),
        }  # fmt: skip
        log = logging.getLogger("sqlalchemy.engine.Engine")
        handler = Statements()
        out += [
            "| workload | statements per request | + dispatcher round | CPU ms/request | + dispatcher round "
            "| idle poll CPU ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        listings: list[str] = []
        profiles: list[str] = []
        for name, call in workloads.items():
            log.setLevel(logging.INFO)
            log.addHandler(handler)
            handler.seen.clear()
            await call(1)  # alias-set: a real move (the alias points at version 1 already)
            in_request = len(handler.seen)
            await tick(dispatcher, "events")
            in_round = len(handler.seen) - in_request
            listings += [f"{name}:", *(f"    {s[:150]}" for s in handler.seen), ""]
            log.removeHandler(handler)
            log.setLevel(logging.WARNING)
            for i in range(20):  # warm caches
                await call(i)
                await tick(dispatcher, "events")
            profile = cProfile.Profile() if args.profile == name.split(" ")[0] else None
            n = args.requests
            t0 = time.process_time()
            for i in range(n):
                await call(i)
            t1 = time.process_time()
            for _ in range(n):
                await tick(dispatcher, "probe")
            t2 = time.process_time()
            if profile:
                profile.enable()
            for i in range(n):
                await call(i)
                await tick(dispatcher, "events")
            t3 = time.process_time()
            if profile:
                profile.disable()
                text = io.StringIO()
                pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
                profiles += [f"profile of {name} (+ dispatcher round), by own time:", text.getvalue()]
            out.append(
                f"| {name} | {in_request} | {in_round} | {1000 * (t1 - t0) / n:.2f} | {1000 * (t3 - t2) / n:.2f} "
                f"| {1000 * (t2 - t1) / n:.2f} |"
            )
    await db.dispose()
    if args.statements:
        out += ["", "Statements (SQLAlchemy engine log; BEGIN (implicit) is SQLAlchemy's own marker):", "", "```"]
        out += [*listings, "```"]
    out += profiles
    return out


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument(
        "--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    p.add_argument("--statements", action="store_true", help="list each workload's statements")
    p.add_argument("--profile", help="cProfile one workload (a name from the table, e.g. alias-get)")
    args = p.parse_args()
    lines = [f"load average at start: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}", ""]
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp)
            if backend == "sqlite":
                lines += ["## SQLite", "", *await bench(f"sqlite:///{data_dir / 'registry.db'}", data_dir, args), ""]
                continue
            name = f"bench_wp_{os.getpid()}"
            await pg_admin_sql(args.postgres_url, f'CREATE DATABASE "{name}"')
            try:
                url = make_url(args.postgres_url).set(database=name).render_as_string(hide_password=False)
                lines += ["## PostgreSQL", "", *await bench(url, data_dir, args), ""]
            finally:
                await pg_admin_sql(args.postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    lines.append(f"load average at end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
