"""One stuck endpoint with a backlog does not hold up the others: a real `registry serve` with four slots, a
receiver that never answers within the timeout and a healthy one, both subscribed to a burst of events."""

from __future__ import annotations

import threading
import time
from pathlib import Path

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

BURST = 24
"""Three times the deliveries the server claims ahead (twice its four slots)."""
ENV = {
    "MODELKEEP_DISPATCHER_CONCURRENCY": "4",
    "MODELKEEP_WEBHOOK_TIMEOUT_SECONDS": "15",  # the default: without a per-endpoint share, the healthy wait this
    "MODELKEEP_WEBHOOK_RETRY_SCHEDULE": "0,60",
}


def test_stuck_endpoint_does_not_delay_healthy_ones(database_url: str, tmp_path: Path) -> None:
    release = threading.Event()
    with (
        stack(database_url, tmp_path) as made,
        Receiver(respond=lambda hit: Reply(hold=release)) as stuck,
        Receiver() as healthy,
    ):
        server = made.serve(ENV)
        model = unique("fair")
        try:
            with client(server, made.tokens.maintainer) as api:
                model_with_versions(api, model, 1)
                stuck_hook = subscribe(api, stuck, ["alias.moved"], model=model)
                healthy_hook = subscribe(api, healthy, ["alias.moved"], model=model)
                for i in range(BURST):
                    moved = api.put(f"/api/v1/models/{model}/aliases/a{i:02d}", json={"version": 1})
                    assert moved.status_code == 200, moved.text
                burst_sent = time.monotonic()

                def healthy_done() -> bool:
                    found = deliveries(api, webhook_id=healthy_hook["id"])
                    return len(found) == BURST and all(d["status"] == "succeeded" for d in found)

                wait_until(healthy_done, timeout=5, what="every delivery to the healthy receiver succeeded")
                assert time.monotonic() - burst_sent < 5 and len(healthy.ids()) == BURST
                # The stuck endpoint holds half the slots (two requests waiting for an answer), nothing more.
                assert len(stuck.snapshot()) <= 2
                waiting = deliveries(api, webhook_id=stuck_hook["id"])
                assert len(waiting) == BURST and all(d["status"] in ("pending", "delivering") for d in waiting)
        finally:
            release.set()
