"""Two `registry serve` replicas on one PostgreSQL database: a burst is delivered exactly once under normal
operation (claims with FOR UPDATE SKIP LOCKED), and each scheduled job runs once per slot across both."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from automations.domain import SchedulerSlot
from registry.db import Database
from tests.automations.receivers import Receiver, client, model_with_versions, stack, subscribe, wait_until
from tests.conftest import LiveServer, unique

BURST = 200
REPLICAS = ("replica-a", "replica-b")
ENV = {
    "MODELKEEP_REAP_INTERVAL_SECONDS": "1",
    "MODELKEEP_WEBHOOK_LOCK_SECONDS": "30",  # normal operation: no lease runs out while a request is in flight
    "MODELKEEP_LOG_LEVEL": "DEBUG",  # runs that had nothing to do are logged at DEBUG
}
RAN = re.compile(r"scheduled job (?P<job>\S+) ran for slot (?P<slot>\S+) on (?P<me>\S+?):")


def slots(database_url: str) -> list[SchedulerSlot]:
    async def main() -> list[SchedulerSlot]:
        db = Database(database_url)
        try:
            async with db.read() as session:
                return list(await session.scalars(select(SchedulerSlot)))
        finally:
            await db.dispose()

    return asyncio.run(main())


def ran(server: LiveServer) -> list[tuple[str, str, str]]:
    return [(m["job"], m["slot"], m["me"]) for m in RAN.finditer(server.log.read_text())]


def send_moves(servers: list[LiveServer], token: str, model: str) -> list[int]:
    """``BURST`` moves of distinct aliases, alternating between the replicas, from a few threads at once."""
    statuses: list[int] = []

    def worker(k: int) -> None:
        with client(servers[k % 2], token) as api:
            for i in range(k, BURST, 8):
                statuses.append(api.put(f"/api/v1/models/{model}/aliases/a{i:03d}", json={"version": 1}).status_code)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.fixture
def replicas(database_url: str, tmp_path: Path) -> Any:
    if not database_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL database (SQLite is one process's embedded mode)")
    with stack(database_url, tmp_path) as made:
        servers = [made.serve(ENV, name=name) for name in REPLICAS]
        yield made, servers


@pytest.mark.slow
def test_burst_through_two_replicas_is_delivered_exactly_once(replicas: Any) -> None:
    made, servers = replicas
    model = unique("replicas")
    with Receiver() as rec:
        with client(servers[0], made.tokens.maintainer) as api:
            subscribe(api, rec, ["alias.moved"], model=model)
            model_with_versions(api, model, 1)
        assert send_moves(servers, made.tokens.writer, model) == [200] * BURST
        wait_until(lambda: len(rec.ids()) == BURST, timeout=60, what="every event delivered")
        time.sleep(1.5)  # room for a second delivery of anything, were one coming
        counts = rec.ids()
        with client(servers[1], made.tokens.reader) as api:
            final = api.get("/api/v1/webhooks/deliveries", params={"limit": 1000}).json()
    assert len(counts) == BURST and set(counts.values()) == {1}, Counter(counts.values())
    assert len(rec.snapshot()) == BURST  # nothing rejected, nothing repeated
    assert len(final) == BURST and {(d["status"], d["attempts"]) for d in final} == {("succeeded", 1)}
    sent = {s.log.name: s.log.read_text().count("HTTP Request: POST") for s in servers}
    print(f"\ndeliveries sent per replica: {sent}")


@pytest.mark.slow
def test_scheduled_job_runs_once_per_slot_across_replicas(replicas: Any) -> None:
    made, servers = replicas
    job = "deliveries.reap_stale_locks"

    def claimers() -> set[str]:
        return {row.claimed_by for row in slots(made.database_url) if row.job == job}

    # Which replica wins a slot is a race; over enough slots both win some.
    wait_until(lambda: claimers() == set(REPLICAS), timeout=45, interval=1, what="both replicas to claim slots")
    # Both may win a slot within the first two seconds: wait for enough slots to judge, whatever the start.
    wait_until(
        lambda: len([r for r in slots(made.database_url) if r.job == job]) >= 5, timeout=30, what="five claimed slots"
    )
    time.sleep(3)
    settled_before = datetime.now(UTC) - timedelta(seconds=2)  # slots whose run has certainly been logged
    rows = [r for r in slots(made.database_url) if r.job == job and r.slot_start < settled_before]
    logged = [entry for server in servers for entry in ran(server) if entry[0] == job]
    assert len(rows) >= 5
    # The primary key allows one row per (job, slot) ...
    assert len({r.slot_start for r in rows}) == len(rows)
    # ... and each slot ran exactly once across both processes, on the replica that claimed it.
    per_slot = Counter(datetime.fromisoformat(slot) for _, slot, _ in logged)
    for row in rows:
        assert per_slot[row.slot_start] == 1, f"slot {row.slot_start} ran {per_slot[row.slot_start]} times"
        assert row.finished_at is not None and row.outcome is not None
        assert row.outcome == "nothing to do" or row.outcome.startswith("requeued")
    for server, name in zip(servers, REPLICAS, strict=True):
        mine = {datetime.fromisoformat(slot) for j, slot, me in ran(server) if j == job}
        assert all(me == name for _, _, me in ran(server))
        claimed = {r.slot_start for r in rows if r.claimed_by == name}
        assert {s for s in mine if s < settled_before} == claimed, f"{name} ran slots it did not claim"
    assert sum(per_slot.values()) == len(per_slot)
