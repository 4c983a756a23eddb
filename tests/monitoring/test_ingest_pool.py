"""Profiling in worker processes (``MODELKEEP_MONITOR_WORKERS``): the same stored profiles and rows as profiling
in the API process, the same errors, a bounded number of tasks at once, and a pool that outlives its workers.

Through real ``registry serve`` processes on loopback (one with a worker, one without), on SQLite and
PostgreSQL; the pool's own contract directly.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from sqlalchemy import select

from monitoring.domain import MonitorBaseline, MonitorRow
from monitoring.workers import ProfilePool
from registry.db import Database
from registry.domain.models import ModelVersion, RegisteredModel
from registry.errors import InvalidInput
from tests.automations.receivers import model_with_versions
from tests.conftest import LiveServer, Tokens, bearer, start_server, stop_server, unique
from tests.monitoring.monitor_helpers import (
    CSV,
    HOUR,
    PARQUET,
    buckets,
    csv,
    frame,
    ingest,
    last_full_hour,
    new_model,
    parquet,
    promote,
    set_baseline,
)
from tests.registry.cli._helpers import Cli

WORKERS = (1, 0)


@pytest.fixture(scope="module")
def servers(
    database_url: str, api_tokens: Tokens, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[int, LiveServer]]:
    """A server profiling in one worker process and one profiling in-process, on the same database."""
    started: dict[int, LiveServer] = {}
    try:
        for workers in WORKERS:
            started[workers] = start_server(
                database_url,
                tmp_path_factory.mktemp(f"workers-{workers}"),
                extra_env={
                    "MODELKEEP_MONITOR_WORKERS": str(workers),
                    "MODELKEEP_SCHEDULER_ENABLED": "false",
                    "MODELKEEP_DISPATCHER_ENABLED": "false",
                    "MODELKEEP_AUTH_CACHE_SECONDS": "0",
                },
            )
        yield started
    finally:
        for server in started.values():
            stop_server(server)


@pytest.fixture
async def clients(servers: dict[int, LiveServer], api_tokens: Tokens) -> AsyncIterator[dict[int, httpx.AsyncClient]]:
    made = {
        w: httpx.AsyncClient(base_url=s.url, headers=bearer(api_tokens.admin), timeout=60) for w, s in servers.items()
    }
    try:
        yield made
    finally:
        for client in made.values():
            await client.aclose()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def worker_pids(server: LiveServer) -> list[int]:
    """The server's profiling workers: the processes it spawned with multiprocessing."""
    return [pid for pid in _children(server.process.pid) if "multiprocessing.spawn" in _cmdline(pid)]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


async def _stored(db: Database, model: str) -> dict[str, Any]:
    """Everything ingestion and the baseline stored for version 1 of ``model``."""
    async with db.read() as session:
        version = await session.scalar(
            select(ModelVersion)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(RegisteredModel.name == model, ModelVersion.version == 1)
        )
        assert version is not None
        baseline = await session.scalar(select(MonitorBaseline).where(MonitorBaseline.model_version_id == version.id))
        assert baseline is not None
        rows = await session.scalars(
            select(MonitorRow).where(MonitorRow.model_version_id == version.id).order_by(MonitorRow.row_id)
        )
        kept = [(r.row_id, r.bucket_start, r.prediction) for r in rows]
    found = [(b.bucket_start, b.rows, b.batches, b.profile, b.sample_digest) for b in await buckets(db, model, 1)]
    return {
        "baseline": (baseline.schema, baseline.profile, baseline.rows, baseline.digest, baseline.options_digest),
        "buckets": found,
        "rows": kept,
    }


async def test_workers_store_what_in_process_profiling_stores(
    servers: dict[int, LiveServer], clients: dict[int, httpx.AsyncClient], db: Database
) -> None:
    # Small enough that every KLL sketch stays exact (DataSketches' compaction draws random bits per process,
    # so larger sketches differ between any two processes, in-process or not).
    start = last_full_hour() - HOUR
    stored, answers = {}, {}
    for workers, api in clients.items():
        model = await new_model(api)
        await set_baseline(api, model, 1, frame(900, seed=1))
        await promote(api, model, 1)
        first = await ingest(api, model, frame(500, seed=2, start=start, span=timedelta(minutes=100)))
        second = await api.post(  # the same hours again, as CSV: merged profiles and samples
            f"/api/v1/models/{model}/monitor/batches",
            content=csv(frame(300, seed=3, start=start + timedelta(minutes=30), span=timedelta(minutes=60))),
            headers=CSV,
            params={"alias": "production"},
        )
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        answers[workers] = [{**r.json(), "model": None} for r in (first, second)]
        stored[workers] = await _stored(db, model)
    assert answers[1] == answers[0]
    assert [len(a["buckets"]) for a in answers[1]] == [2, 2]
    assert stored[1] == stored[0]
    assert [b[1:3] for b in stored[1]["buckets"]] == [(b[1], 2) for b in stored[1]["buckets"]]
    assert sum(b[1] for b in stored[1]["buckets"]) == 800 and len(stored[1]["rows"]) == 800
    # The worker server really profiled in another process; the other one has none.
    assert worker_pids(servers[1]) and not worker_pids(servers[0])


def _problem(response: httpx.Response, model: str) -> tuple[int, dict[str, Any]]:
    """Status and problem+json, with the model's name and the spool file's (random) name left out."""
    body = response.json()
    return response.status_code, {
        k: re.sub(r"\S*upload-\w+\.part", "SPOOL", str(v).replace(model, "MODEL")) for k, v in body.items()
    }


async def test_bad_input_through_a_worker_is_the_same_4xx_naming_the_column(
    clients: dict[int, httpx.AsyncClient],
) -> None:
    at = last_full_hour()
    good = frame(200, seed=5, start=at)
    future = frame(50, seed=6, start=at + timedelta(days=2))
    bodies: dict[str, tuple[bytes, dict[str, str]]] = {
        "missing": (parquet(good.drop_columns(["amount"])), PARQUET),
        "type": (parquet(good.set_column(0, "amount", pa.array(["x"] * good.num_rows))), PARQUET),
        "extra": (parquet(good.append_column("extra", pa.array([1.0] * good.num_rows))), PARQUET),
        "future": (parquet(future), PARQUET),
        "empty": (b"", PARQUET),
        "unreadable": (b"not parquet at all", PARQUET),
        "empty csv": (b"amount,age,country,score,label,id,ts\n", CSV),
    }
    seen: dict[int, dict[str, tuple[int, dict[str, Any]]]] = {}
    for workers, api in clients.items():
        model = await new_model(api)
        await set_baseline(api, model, 1, frame(300, seed=1))
        await promote(api, model, 1)
        found = {}
        for case, (body, headers) in bodies.items():
            answer = await api.post(
                f"/api/v1/models/{model}/monitor/batches", content=body, headers=headers, params={"alias": "production"}
            )
            found[case] = _problem(answer, model)
        other = await new_model(api)
        refused = await api.put(
            f"/api/v1/models/{other}/versions/1/monitor/baseline",
            content=parquet(good),
            headers=PARQUET,
            params={"prediction": "nope"},
        )
        found["baseline"] = _problem(refused, other)
        seen[workers] = found
    assert seen[1] == seen[0]
    fields = {case: (status, problem.get("field"), problem["code"]) for case, (status, problem) in seen[1].items()}
    assert fields == {
        "missing": (400, "amount", "schema_mismatch"),
        "type": (400, "amount", "schema_mismatch"),
        "extra": (400, "extra", "schema_mismatch"),
        "future": (400, "ts", "future_timestamp"),
        "empty": (400, None, "empty_batch"),
        "unreadable": (400, None, "unreadable_data"),
        "empty csv": (400, None, "empty_batch"),
        "baseline": (400, "nope", "schema_mismatch"),
    }
    assert "row" in seen[1]["future"][1]


async def test_the_pool_outlives_a_killed_worker(
    servers: dict[int, LiveServer], clients: dict[int, httpx.AsyncClient]
) -> None:
    api, server = clients[1], servers[1]
    model = await new_model(api)
    await set_baseline(api, model, 1, frame(300, seed=1))
    await promote(api, model, 1)
    assert (await ingest(api, model, frame(100, seed=2))).status_code == 200
    killed = worker_pids(server)
    assert killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in killed):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    answer = await ingest(api, model, frame(150, seed=3))
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == 150
    assert (await ingest(api, model, frame(50, seed=4))).status_code == 200
    replaced = worker_pids(server)
    assert replaced and not set(replaced) & set(killed)


def test_monitor_show_prints_the_spec_as_written(
    live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cli = Cli(live_server, api_tokens.admin, capsys)
    model = unique("show")
    spec = "version: 1\nwindow: 1h\nalert_on: [amount]\n"
    with httpx.Client(base_url=live_server.url, headers=bearer(api_tokens.admin), timeout=60) as api:
        model_with_versions(api, model, 1)
        reference = frame(300, seed=1).rename_columns(["amount", "age", "country", "[b]", "label", "id", "ts"])
        made = api.put(
            f"/api/v1/models/{model}/versions/1/monitor/baseline",
            content=parquet(reference),
            headers=PARQUET,
            params={"timestamp": "ts"},
        )
        assert made.status_code == 200, made.text
        assert api.put(f"/api/v1/models/{model}/monitor", json={"spec": spec}).status_code == 200
    code, out, err = cli("monitor", "show", model)
    assert code == 0, err
    assert out.strip() == spec.strip()
    code, out, err = cli("monitor", "baseline", "show", model, "1")
    assert code == 0 and "[b] (numerical)" in out, err


# -- the pool itself ----------------------------------------------------------------------------------------------
def _where() -> int:
    return os.getpid()


def _refuse(column: str) -> None:
    raise InvalidInput(f"column {column!r} is missing", code="schema_mismatch", field=column, row=7)


def _span(seconds: float) -> tuple[float, float]:
    started = time.monotonic()
    time.sleep(seconds)
    return started, time.monotonic()


def _one_after_another(spans: list[tuple[float, float]]) -> bool:
    return all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(sorted(spans)))


def _die_once(marker: str) -> str:
    """Kills its worker the first time (as the OOM killer would), succeeds when run again."""
    if not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return "done"


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture
async def pool() -> AsyncIterator[ProfilePool]:
    made = ProfilePool(1, max_tasks_per_child=2)
    made.start()
    try:
        yield made
    finally:
        await made.close()


async def test_tasks_run_in_a_worker_and_errors_come_back_as_raised(pool: ProfilePool) -> None:
    assert await pool.run(_where) != os.getpid()
    with pytest.raises(InvalidInput) as raised:
        await pool.run(_refuse, "amount")
    error = raised.value
    assert (error.message, error.code, error.extra) == ("column 'amount' is missing", "schema_mismatch",
                                                        {"field": "amount", "row": 7})  # fmt: skip


async def test_one_task_at_a_time_per_worker_and_workers_are_recycled(pool: ProfilePool) -> None:
    spans = await asyncio.wait_for(asyncio.gather(*(pool.run(_span, 0.2) for _ in range(3))), timeout=60)
    assert _one_after_another(spans)
    # Two tasks per worker: seven tasks need at least four processes, one after the other, and never stall.
    pids = [await asyncio.wait_for(pool.run(_where), timeout=30) for _ in range(7)]
    assert len(set(pids)) >= 4


async def test_a_dead_worker_is_replaced_and_its_task_run_again(pool: ProfilePool, tmp_path: Path) -> None:
    assert await pool.run(_die_once, str(tmp_path / "died")) == "done"
    with pytest.raises(BrokenProcessPool):  # dies every time: reported after one more try
        await pool.run(_die)
    assert await pool.run(_where) != os.getpid()


async def test_no_workers_runs_in_process() -> None:
    pool = ProfilePool(0)
    pool.start()
    try:
        assert await pool.run(_where) == os.getpid()
        spans = await asyncio.gather(*(pool.run(_span, 0.1) for _ in range(3)))
        assert _one_after_another(spans)
    finally:
        await pool.close()
