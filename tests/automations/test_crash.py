"""At least once across a crash: SIGKILL the server in the middle of a burst of events while a slow receiver
holds deliveries in flight, restart it on the same database, and every committed event still arrives."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.automations.receivers import (
    Receiver,
    Reply,
    client,
    deliveries,
    model_with_versions,
    stack,
    subscribe,
    wait_until,
)
from tests.conftest import unique

BURST = 200
ENV = {
    "MODELKEEP_WEBHOOK_LOCK_SECONDS": "2",  # leases of the killed process run out quickly ...
    "MODELKEEP_REAP_INTERVAL_SECONDS": "1",  # ... and are requeued by the reaper of the new one
    "MODELKEEP_WEBHOOK_RETRY_SCHEDULE": "0,0.5,1,2,4,8",
    "MODELKEEP_WEBHOOK_TIMEOUT_SECONDS": "5",
}


class Burst:
    """``BURST`` alias moves (a distinct alias each, so each committed move is exactly one event), sent by a
    few threads; remembers which calls answered 200 (committed for sure) and which did not."""

    def __init__(self, url: str, token: str, model: str, aliases: list[str], pace: float = 0.0) -> None:
        self.url, self.token, self.model = url, token, model
        self.pace = pace
        """Seconds each thread waits between its calls: keeps the burst going for a known time, however fast
        the server answers."""
        self.todo = list(aliases)
        self.done: dict[str, int | None] = {}  # alias -> promotion id (None: it was already there)
        self.failed: list[str] = []
        self._lock = threading.Lock()

    def _next(self) -> str | None:
        with self._lock:
            return self.todo.pop() if self.todo else None

    def _worker(self) -> None:
        with httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {self.token}"}, timeout=30) as api:
            while (alias := self._next()) is not None:
                try:
                    response = api.put(f"/api/v1/models/{self.model}/aliases/{alias}", json={"version": 1})
                except httpx.TransportError:
                    response = None
                with self._lock:
                    if response is not None and response.status_code == 200:
                        self.done[alias] = response.json().get("id")  # absent: committed before a crash
                    else:
                        self.failed.append(alias)
                time.sleep(self.pace)

    def run(self, workers: int = 8) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()
        return threads


def all_events(api: httpx.Client, model: str, type_: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.get("/api/v1/events", params={"model": model, "type": type_, "after": after, "limit": 500}).json()
        found += page["items"]
        if not page["next"]:
            return found
        after = int(page["next"])


@pytest.mark.slow
def test_sigkill_mid_burst_loses_no_event(database_url: str, tmp_path: Path) -> None:
    model = unique("crash")
    aliases = [f"a{i:03d}" for i in range(BURST)]
    with stack(database_url, tmp_path) as made, Receiver(respond=lambda hit: Reply(200, delay=0.5)) as rec:
        first = made.serve(ENV, name="before-crash")
        with client(first, made.tokens.maintainer) as api:
            subscribe(api, rec, ["alias.moved"], model=model)
            model_with_versions(api, model, 1)
        # 8 threads, 25 calls each, 0.1 s apart: the burst lasts 2.5 s or more, so the kill lands inside it.
        burst = Burst(first.url, made.tokens.writer, model, aliases, pace=0.1)
        threads = burst.run()
        # Kill once the burst is well under way and the slow receiver holds deliveries in flight.
        wait_until(
            lambda: len(burst.done) >= BURST // 3 and len(rec.snapshot()) >= 20,
            timeout=60,
            what="the burst to be under way",
        )
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
        made.servers.remove(first)
        killed_with = (len(burst.done), len(rec.ids()))
        for thread in threads:
            thread.join(timeout=60)
        assert killed_with[0] < BURST and burst.failed, "the kill should land in the middle of the burst"

        second = made.serve(ENV, name="after-crash")
        retry = Burst(second.url, made.tokens.writer, model, burst.failed)  # a lost answer may have committed
        for thread in retry.run():
            thread.join(timeout=120)
        assert not retry.failed
        with client(second, made.tokens.reader) as api:
            events = all_events(api, model, "alias.moved")
            assert len(events) == BURST  # each alias moved exactly once, whichever server answered
            wanted = {e["id"] for e in events}
            wait_until(
                lambda: wanted <= set(rec.ids()), timeout=90, interval=0.2, what="every committed event to be delivered"
            )

            def all_succeeded() -> list[dict[str, Any]] | None:
                found = api.get("/api/v1/webhooks/deliveries", params={"limit": 1000}).json()
                return found if {d["status"] for d in found} == {"succeeded"} else None

            final = wait_until(all_succeeded, timeout=30, what="every delivery to be recorded as succeeded")
    received = rec.ids()
    promotions = {p["data"]["promotion_id"] for p in rec.payloads("alias.moved")}
    acknowledged = {p for p in [*burst.done.values(), *retry.done.values()] if p is not None}
    assert acknowledged <= promotions  # every acknowledged move arrived
    assert len(final) == BURST
    duplicates = sum(n - 1 for n in received.values())
    print(
        f"\n[{made.backend}] killed after {killed_with[0]} acknowledged moves and {killed_with[1]} deliveries; "
        f"{len(received)} events delivered, {duplicates} duplicate deliveries (at least once)"
    )


def test_removing_an_endpoint_mid_flight_does_not_resend_other_deliveries(database_url: str, tmp_path: Path) -> None:
    model, count = unique("midflight"), 20
    release = threading.Event()
    held = Reply(200, hold=release)
    with (
        stack(database_url, tmp_path) as made,
        Receiver(respond=lambda hit: held) as doomed,
        Receiver(respond=lambda hit: held) as kept,
    ):
        server = made.serve(ENV)
        with client(server, made.tokens.maintainer) as api:
            gone = subscribe(api, doomed, ["alias.moved"], model=model)
            stays = subscribe(api, kept, ["alias.moved"], model=model)
            model_with_versions(api, model, 1)
            for i in range(count):
                assert api.put(f"/api/v1/models/{model}/aliases/a{i:03d}", json={"version": 1}).status_code == 200
            # Both endpoints hold all their requests open; remove one of them, then let every answer go at once.
            wait_until(lambda: len(doomed.snapshot()) == len(kept.snapshot()) == count, what="all requests held")
            assert api.delete(f"/api/v1/webhooks/{gone['id']}").status_code == 200
            release.set()
            time.sleep(float(ENV["MODELKEEP_WEBHOOK_LOCK_SECONDS"]) + 3)  # past any lease and the next reap
            found = deliveries(api, webhook_id=stays["id"])
    assert len(found) == count and {(d["status"], d["attempts"]) for d in found} == {("succeeded", 1)}
    assert set(kept.ids().values()) == {1}, "deliveries of the endpoint that stayed were sent twice"
