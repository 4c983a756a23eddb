"""The per-process worker loop: fan out new events, send due deliveries, run queued actions.

Every replica runs one. It wakes right after this process commits an event (``Database.on_commit``) and
otherwise polls every ``dispatcher_poll_seconds`` (events committed by other replicas, retries that fell
due, jobs queued through the API). A poll first asks, read-only, whether there is anything to do; an idle
replica takes no write transactions. Deliveries are
sent concurrently (``dispatcher_concurrency``) and their outcomes written back in batches, so a slow
receiver occupies one slot, not the loop.

Each round fans out new events and claims due deliveries and jobs in one transaction (one commit, and a
delivery fanned out is claimed in the same round). It claims up to twice ``dispatcher_concurrency``
deliveries ahead of free slots, so a slot that frees up starts its next send without waiting for a
database round trip; a claimed delivery waits at most about one attempt's timeout for a slot, well within
its lease. Of those, one endpoint holds at most ``per_webhook`` (its share of the connections, at most half
the slots): an endpoint that times out on every attempt and has a backlog would otherwise fill every claimed
place, and other endpoints' deliveries would not be claimed until its attempts time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from datetime import timedelta
from typing import Literal

from automations import actions, delivery, fanout
from automations.sender import Sender, StreamSender
from registry import observability
from registry.db import Database
from registry.domain.base import utcnow
from registry.errors import RegistryError
from registry.settings import Settings
from registry.storage import BlobStore

log = logging.getLogger("automations.dispatcher")
RECORD_BATCH = 500
JOB_CONCURRENCY = 2
PER_HOST = 32
Scope = Literal["full", "events", "probe"]
"""Connections one destination may use at once (of ``dispatcher_concurrency`` in all)."""


class Dispatcher:
    def __init__(self, db: Database, store: BlobStore, settings: Settings, *, sender: Sender | None = None) -> None:
        self.db, self.store, self.settings = db, store, settings
        self.me = settings.instance
        self.lock = timedelta(seconds=settings.webhook_lock_seconds)
        concurrency = settings.dispatcher_concurrency
        self._sender = sender or StreamSender(per_host=min(PER_HOST, concurrency))
        self._wake = asyncio.Event()
        self._refill = False
        """The wake-up is for room to claim more deliveries or jobs (no point in waiting for more commits)."""
        self._slots = asyncio.Semaphore(concurrency)
        self._capacity = 2 * concurrency
        """Deliveries claimed and not yet sent (sending, or waiting for a slot) at most."""
        self._claimed = 0
        # Never more than the destination may send at once (its other claimed deliveries would only wait for
        # its turn), and at most half the slots, so one stuck endpoint leaves the rest to the others.
        self._per_webhook = max(1, min(PER_HOST, concurrency // 2))
        self._claimed_per_webhook: Counter[int] = Counter()
        # Top up in batches: claiming a handful of rows whenever one send finishes would cost a write
        # transaction per few deliveries.
        self._claim_at_least = max(1, concurrency // 4)
        self._jobs_running = 0
        self._poll = settings.dispatcher_poll_seconds
        self._subscribers: bool | None = None
        """Whether the last fan-out found a webhook or rule enabled (None: no fan-out yet)."""
        self._last_round = 0.0
        self._results: asyncio.Queue[tuple[delivery.Claimed, delivery.Outcome]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._recorder: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self.db.on_commit.append(self.wake)
        self._main = asyncio.create_task(self._run(), name="modelkeep-dispatcher")
        self._recorder = asyncio.create_task(self._record_loop(), name="modelkeep-recorder")

    async def stop(self) -> None:
        if self.wake in self.db.on_commit:
            self.db.on_commit.remove(self.wake)
        for task in (self._main, self._recorder, *self._tasks):
            if task is not None:
                task.cancel()
        for task in (self._main, self._recorder, *self._tasks):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._sender.aclose()

    async def _run(self) -> None:
        scope: Scope = "full"
        while True:
            try:
                busy = await self.tick(scope=scope)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep delivering: a bad row must not stop every other delivery
                log.exception("dispatcher tick failed")
                busy = False
            if busy:
                scope = "full"
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.dispatcher_poll_seconds)
            if not self._wake.is_set():
                scope = "probe"  # a poll: events of other replicas, retries and queued jobs that fell due
            elif self._refill:
                scope = "full"
            else:
                scope = "events"
                if self.settings.dispatcher_coalesce_seconds > 0:
                    # Every committed change wakes us; one round (a write transaction) can serve a burst.
                    # Not when deliveries finished: their slots would sit idle meanwhile.
                    await asyncio.sleep(self.settings.dispatcher_coalesce_seconds)
            self._wake.clear()
            self._refill = False

    async def tick(self, *, scope: Scope = "full") -> bool:
        """One round; True when there may be more work right away.

        ``full``: fan out new events, claim due deliveries and jobs. ``events`` (this process committed
        events): fan out, and claim only if that made deliveries or jobs; deliveries that fall due later are
        found by a poll. While the last fan-out found no webhook or rule enabled, an ``events`` round is
        skipped if one ran within the poll interval: events nobody subscribes to need only the cursor moved,
        once per interval (a webhook or rule enabled meanwhile gets its first events up to one interval later).
        ``probe`` (a poll): a full round only if a read-only check finds work."""
        now = time.monotonic()
        if scope == "events" and self._subscribers is False and now - self._last_round < self._poll:
            return False
        if scope == "probe":
            async with self.db.read() as session:
                if not await fanout.work_due(session, now=utcnow()):
                    return False
            scope = "full"
        wanted = self._capacity - self._claimed
        jobs_wanted = JOB_CONCURRENCY - self._jobs_running
        claimed: list[delivery.Claimed] = []
        jobs: list[actions.ClaimedJob] = []
        self._last_round = now
        async with self.db.write() as session:
            fanned = await fanout.fan_out(session)
            if fanned.subscribers is not None:
                self._subscribers = fanned.subscribers
            if wanted >= self._claim_at_least and (scope == "full" or fanned.deliveries):
                claimed = await delivery.claim(
                    session,
                    me=self.me,
                    limit=wanted,
                    lock=self.lock,
                    per_webhook=self._per_webhook,
                    in_flight=self._claimed_per_webhook,
                )
            if jobs_wanted > 0 and (scope == "full" or fanned.jobs):
                jobs = await actions.claim(session, me=self.me, limit=jobs_wanted, lock=self.lock)
        self._claimed += len(claimed)
        self._claimed_per_webhook.update(item.webhook_id for item in claimed)
        for item in claimed:
            self._spawn(self._deliver(item))
        # An endpoint that reached its share may have stood in front of other endpoints' due deliveries in this
        # claim; the next round skips it in the query and finds those.
        filled = any(self._claimed_per_webhook[item.webhook_id] >= self._per_webhook for item in claimed)
        self._jobs_running += len(jobs)
        for job in jobs:
            self._spawn(self._run_job(job))
        return fanned.more or filled or (wanted >= self._claim_at_least and len(claimed) >= wanted)

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, item: delivery.Claimed) -> None:
        try:
            # The destination's turn first, then a slot: a delivery queued behind a busy receiver holds
            # none of the slots other receivers' deliveries could use. Neither wait counts as the attempt.
            async with self._sender.reserve(item.url), self._slots:
                outcome = await delivery.send(self._sender, item, settings=self.settings)
            observe(item, outcome)
            await self._results.put((item, outcome))
        finally:
            self._claimed -= 1
            self._claimed_per_webhook[item.webhook_id] -= 1
            if self._claimed_per_webhook[item.webhook_id] <= 0:
                del self._claimed_per_webhook[item.webhook_id]

    async def _record_loop(self) -> None:
        while True:
            batch = [await self._results.get()]
            while len(batch) < RECORD_BATCH and not self._results.empty():
                batch.append(self._results.get_nowait())
            try:
                async with self.db.write() as session:
                    await delivery.record(session, batch, me=self.me, settings=self.settings)
            except asyncio.CancelledError:
                raise
            except Exception:  # the leases expire and the reaper requeues these deliveries
                log.exception("recording %d delivery outcomes failed", len(batch))
            # Sends finished (room to claim more), and failures may be due again soon.
            self._refill = True
            self.wake()

    async def _run_job(self, job: actions.ClaimedJob) -> None:
        try:
            result, error = None, None
            try:
                result = await actions.execute(self.db, self.store, self.settings, job)
            except RegistryError as exc:
                error = exc
            except Exception as exc:
                log.exception("automation job %s failed", job.id)
                error = RegistryError(f"internal error: {exc.__class__.__name__}")
            async with self.db.write() as session:
                await actions.finish(session, job_id=job.id, me=self.me, result=result, error=error)
        finally:
            self._jobs_running -= 1
            self._refill = True  # a job slot is free: claim the next queued job now, not at the next poll
            self.wake()


def observe(item: delivery.Claimed, outcome: delivery.Outcome) -> None:
    """The attempt in ``/metrics``: its outcome and duration, and on success how long after its event."""
    m = observability.metrics()
    m.delivery_attempts.labels("succeeded" if outcome.ok else "failed").inc()
    m.delivery_seconds.observe(outcome.duration_ms / 1000)
    if outcome.ok and item.event_created_at is not None:
        m.delivery_lag.observe(max(0.0, (utcnow() - item.event_created_at).total_seconds()))
