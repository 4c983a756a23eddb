"""Three `registry serve` replicas on one PostgreSQL database and one S3 bucket (SeaweedFS), behind a real
HAProxy that health-checks ``/health``, under mixed load sent only through the balancer; one replica is
SIGKILLed in the middle of it.

What it shows: version numbers stay gapless across replicas; each compare-and-set race on an alias has one
winner; every event reaches a webhook receiver once (only deliveries the killed replica held in flight may
arrive again, at least once); each scheduler slot runs once across the replicas; nothing acknowledged is
lost and every acknowledged blob reads back from S3 with its sha256; the balancer stops routing to the dead
replica and the load completes on the other two; afterwards every replica, the restarted one included,
gives the same answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from automations.domain import Delivery, SchedulerSlot
from registry.client import RegistryClient
from registry.db import Database
from registry.domain.events import Event
from registry.storage import blob_key
from tests.automations.receivers import Receiver, Reply, fresh_database, migrate_and_make_tokens, wait_until
from tests.conftest import PG_ENV, Tokens, bearer, free_port, unique
from tests.fixtures.seaweed import S3Server
from tests.scale.haproxy import Balancer, balancer, haproxy_binary, stop_group

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPLICAS = ("replica-a", "replica-b", "replica-c")
VICTIM = "replica-b"
LEASE_SECONDS = 8
ENV = {
    "MODELKEEP_CREATE_ADMIN_TOKEN": "false",
    "MODELKEEP_LOG_LEVEL": "DEBUG",  # scheduled runs that had nothing to do are logged at DEBUG
    "MODELKEEP_LOG_FORMAT": "text",
    "MODELKEEP_DB_POOL_SIZE": "5",  # three replicas share one PostgreSQL
    "MODELKEEP_MONITOR_WORKERS": "0",  # no profiling processes: nothing here monitors, and the machine is small
    "MODELKEEP_WEBHOOK_ALLOW_HOSTS": "127.0.0.1,localhost",
    "MODELKEEP_WEBHOOK_TIMEOUT_SECONDS": "5",
    "MODELKEEP_WEBHOOK_RETRY_SCHEDULE": "0,0.5,1,2",
    # Longer than any delivery to a loopback receiver takes, so a lease runs out only for the killed replica.
    "MODELKEEP_WEBHOOK_LOCK_SECONDS": str(LEASE_SECONDS),
    "MODELKEEP_DISPATCHER_POLL_SECONDS": "0.2",
    # Two jobs on short slots, so the replicas race for many slots while the load runs.
    "MODELKEEP_REAP_INTERVAL_SECONDS": "1",
    "MODELKEEP_GC_INTERVAL_SECONDS": "2",
}
EVENTS = ["model.created", "model_version.created", "alias.moved"]
WORKERS = 4
CONTESTANTS = 5
PHASE_A = {"create": 50, "push": 12, "read": 50, "race": 6}
"""The load that runs while a replica is killed (the kill comes once ``KILL_AFTER`` of it is done)."""
PHASE_B = {"create": 25, "push": 6, "read": 25, "race": 3}
"""The load sent once HAProxy has taken the dead replica out of rotation: every request of it must succeed."""
KILL_AFTER = 45
RAN = re.compile(r"scheduled job (?P<job>\S+) ran for slot (?P<slot>\S+) on (?P<me>\S+?):")


# -- replicas ------------------------------------------------------------------------------------------------
@dataclass
class Replica:
    """One `registry serve --workers 1` process in its own process group, on a fixed port (so it can be
    restarted where the balancer expects it), logging to ``log`` (appended to across restarts)."""

    name: str
    port: int
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data_dir / "server.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
        env.update(self.env)
        with open(self.log, "ab") as sink:
            # Its own session: SIGKILL reaches the server and anything it started, and nothing else.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "registry", "serve", "--port", str(self.port), "--workers", "1"],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not become healthy in {timeout:g}s:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, grace=15)

    def ran(self) -> list[tuple[str, datetime, str]]:
        """(job, slot, instance) of every scheduled run this replica logged, in all its lives."""
        text = self.log.read_text(errors="replace")
        return [(m["job"], datetime.fromisoformat(m["slot"]), m["me"]) for m in RAN.finditer(text)]


@dataclass
class Cluster:
    database_url: str
    tokens: Tokens
    replicas: dict[str, Replica]
    lb: Balancer
    s3: S3Server
    prefix: str


@pytest.fixture
def cluster(s3_server: S3Server, tmp_path: Path) -> Iterator[Cluster]:
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    haproxy_binary()  # fail before anything is started when it is missing
    prefix = unique("lb")
    with fresh_database(admin_url, tmp_path) as url:
        tokens = migrate_and_make_tokens(url)
        shared = {
            **ENV,
            "MODELKEEP_DATABASE_URL": url,
            "MODELKEEP_BLOB_STORE_URL": f"s3://{s3_server.bucket}/{prefix}",
            "MODELKEEP_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "MODELKEEP_S3_REGION": s3_server.region,
            "MODELKEEP_S3_ACCESS_KEY_ID": s3_server.access_key,
            "MODELKEEP_S3_SECRET_ACCESS_KEY": s3_server.secret_key,
        }
        replicas = {
            name: Replica(
                name=name,
                port=free_port(),
                data_dir=tmp_path / name,
                env={**shared, "MODELKEEP_INSTANCE_NAME": name, "MODELKEEP_DATA_DIR": str(tmp_path / name)},
            )
            for name in REPLICAS
        }
        try:
            for replica in replicas.values():
                replica.start()
            for replica in replicas.values():
                replica.wait_healthy()
            addresses = {name: f"127.0.0.1:{r.port}" for name, r in replicas.items()}
            with balancer(tmp_path, addresses) as lb:
                yield Cluster(url, tokens, replicas, lb, s3_server, prefix)
        finally:
            for replica in replicas.values():
                replica.stop()


# -- the load --------------------------------------------------------------------------------------------------
@dataclass
class Race:
    alias: str
    statuses: list[int | None]
    """Per contestant: the HTTP status, None when no answer came (the request died with the replica)."""
    bodies: list[dict[str, Any]]
    after_down: bool


@dataclass
class Load:
    """Mixed traffic through the balancer from ``WORKERS`` threads; records what was acknowledged."""

    lb: str
    token: str
    model: str
    """Versions are created here (plain creates and SDK pushes): they must stay gapless."""
    racing: str
    """Aliases race here, each over versions 1 .. CONTESTANTS + 1."""
    base: dict[str, Any]
    """The manifest entry of a blob uploaded before the load, used by the plain creates."""
    folder: Path
    ops: queue.Queue[tuple[str, int, bool] | None] = field(default_factory=queue.Queue)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: int = 0
    acked: list[tuple[int, str]] = field(default_factory=list)
    """(version, sha256 of its one file) of every create or push that was answered 2xx."""
    pushed: dict[str, bytes] = field(default_factory=dict)
    """Blobs of acknowledged pushes, by sha256."""
    unanswered_writes: int = 0
    """Creates and pushes that got no 2xx: they may or may not have committed."""
    races: list[Race] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """Every failed attempt (a retried read included), with the phase it belonged to."""
    errors: list[str] = field(default_factory=list)
    """Broken expectations inside the load (a wrong digest, a read that never succeeded)."""
    reads: int = 0
    stopped: bool = False

    def enqueue(self, counts: dict[str, int], *, after_down: bool, seed: int) -> None:
        plan = [(kind, i) for kind, n in counts.items() for i in range(n)]
        random.Random(seed).shuffle(plan)
        for kind, i in plan:
            self.ops.put((kind, i + (1000 if after_down else 0), after_down))

    def finish(self) -> None:
        for _ in range(WORKERS):
            self.ops.put(None)

    def abandon(self) -> None:
        """Stop the workers after their current operation (the test ended, maybe early)."""
        self.stopped = True
        self.finish()

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._worker, args=(k,), daemon=True) for k in range(WORKERS)]
        for thread in threads:
            thread.start()
        return threads

    def _fail(self, after_down: bool, what: str) -> None:
        with self.lock:
            self.failures.append(f"{'after' if after_down else 'before'} down: {what}")

    def _worker(self, k: int) -> None:
        with (
            httpx.Client(base_url=self.lb, headers=bearer(self.token), timeout=30) as api,
            RegistryClient(self.lb, self.token, timeout=30) as sdk,
        ):
            while not self.stopped and (op := self.ops.get()) is not None:
                kind, i, after_down = op
                try:
                    if kind == "create":
                        self._create(api, after_down)
                    elif kind == "push":
                        self._push(sdk, i, after_down)
                    elif kind == "read":
                        self._read(api, i, after_down)
                    else:
                        asyncio.run(self._race(i, after_down))
                except Exception as exc:  # reported by the test, not lost in a thread
                    with self.lock:
                        self.errors.append(f"{kind} {i}: {exc!r}")
                with self.lock:
                    self.done += 1

    def _create(self, api: httpx.Client, after_down: bool) -> None:
        response: httpx.Response | None = None
        try:
            response = api.post(f"/api/v1/models/{self.model}/versions", json={"files": [self.base]})
            error = f"{response.status_code} {response.text[:200]}"
        except httpx.TransportError as exc:
            error = repr(exc)
        with self.lock:
            if response is not None and response.status_code == 201:
                self.acked.append((int(response.json()["version"]), self.base["sha256"]))
                return
            self.unanswered_writes += 1
        self._fail(after_down, f"create: {error}")

    def _push(self, sdk: RegistryClient, i: int, after_down: bool) -> None:
        """The SDK's push: HEAD the blob, stream it (PUT, spooled and sent to S3), create the version."""
        folder = self.folder / f"push-{i}"
        folder.mkdir()
        data = os.urandom(128 * 1024 + i)
        (folder / "weights.bin").write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        try:
            made = sdk.push(self.model, folder)
        except Exception as exc:  # the SDK's errors and transport failures alike: not acknowledged
            with self.lock:
                self.unanswered_writes += 1
            self._fail(after_down, f"push: {exc!r}")
            return
        with self.lock:
            self.acked.append((int(made["version"]), digest))
            self.pushed[digest] = data

    def _read(self, api: httpx.Client, i: int, after_down: bool) -> None:
        """A read, retried (it is idempotent) until it is answered, checking blob bytes against their digest."""
        with self.lock:
            blobs = sorted(self.pushed)
        if i % 3 == 0:
            path = f"/api/v1/models/{self.model}"
        elif i % 3 == 1 or not blobs:
            path = f"/api/v1/models/{self.model}/versions"
        else:
            path = f"/api/v1/blobs/{blobs[i % len(blobs)]}"
        for _ in range(8):
            try:
                response = api.get(path, params={"order": "desc", "limit": 10} if path.endswith("versions") else None)
            except httpx.TransportError as exc:
                self._fail(after_down, f"read {path}: {exc!r}")
                time.sleep(0.2)
                continue
            if response.status_code != 200:
                self._fail(after_down, f"read {path}: {response.status_code} {response.text[:200]}")
                time.sleep(0.2)
                continue
            if "/blobs/" in path and hashlib.sha256(response.content).hexdigest() != path.rsplit("/", 1)[1]:
                raise AssertionError(f"{path} read back other bytes")
            with self.lock:
                self.reads += 1
            return
        raise AssertionError(f"read {path} kept failing through the balancer")

    async def _race(self, i: int, after_down: bool) -> None:
        """One compare-and-set race: the alias is set to v1, then CONTESTANTS clients who all believe it holds
        v1 try at once to move it to their own version. The balancer spreads them over the replicas."""
        alias = f"race-{i:04d}"
        path = f"/api/v1/models/{self.racing}/aliases/{alias}"
        limits = httpx.Limits(max_connections=CONTESTANTS, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=self.lb, headers=bearer(self.token), timeout=30, limits=limits) as api:
            for _ in range(8):  # setting an alias to the version it holds is a no-op: safe to repeat
                try:
                    if (await api.put(path, json={"version": 1})).status_code == 200:
                        break
                except httpx.TransportError as exc:
                    self._fail(after_down, f"race setup: {exc!r}")
                await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"could not set {alias} to v1 through the balancer")

            async def contest(version: int) -> tuple[int | None, dict[str, Any]]:
                try:
                    response = await api.put(path, json={"version": version, "expect": 1})
                except httpx.TransportError as exc:
                    self._fail(after_down, f"race: {exc!r}")
                    return None, {}
                if response.status_code not in (200, 409):
                    self._fail(after_down, f"race: {response.status_code} {response.text[:200]}")
                    return None, {}
                return response.status_code, dict(response.json())

            answers = await asyncio.gather(*(contest(v) for v in range(2, CONTESTANTS + 2)))
        with self.lock:
            self.races.append(Race(alias, [s for s, _ in answers], [b for _, b in answers], after_down))


# -- reading state --------------------------------------------------------------------------------------------
def query(database_url: str, statement: Any) -> list[Any]:
    async def main() -> list[Any]:
        db = Database(database_url)
        try:
            async with db.read() as session:
                return list((await session.execute(statement)).all())
        finally:
            await db.dispose()

    return asyncio.run(main())


def held_by(database_url: str, name: str) -> set[str]:
    """Ids of the events whose deliveries ``name`` had leased and not yet recorded (in flight there)."""
    rows = query(
        database_url,
        select(Event.id)
        .join(Delivery, Delivery.event_seq == Event.seq)
        .where(Delivery.status == "delivering", Delivery.locked_by == name),
    )
    return {row[0] for row in rows}


def all_events(api: httpx.Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.get("/api/v1/events", params={"after": after, "limit": 500}).json()
        found += page["items"]
        if not page["next"]:
            return found
        after = int(page["next"])


def snapshot(url: str, token: str, model: str, racing: str, aliases: list[str], blob: str) -> dict[str, Any]:
    """What one replica answers about the outcome of the load (read directly, not through the balancer)."""
    with httpx.Client(base_url=url, headers=bearer(token), timeout=30) as api:
        paths = [
            f"/api/v1/models/{model}",
            f"/api/v1/models/{model}/versions?limit=1000",
            f"/api/v1/models/{racing}",
            f"/api/v1/models/{racing}/versions?limit=1000",
            f"/api/v1/models/{racing}/promotions?limit=1000",
            *(f"/api/v1/models/{racing}/aliases/{alias}" for alias in aliases),
            "/api/v1/events?limit=1000",
        ]
        answers: dict[str, Any] = {}
        for path in paths:
            response = api.get(path)
            assert response.status_code == 200, (url, path, response.text)
            answers[path] = response.json()
        download = api.get(f"/api/v1/blobs/{blob}")
        assert download.status_code == 200
        answers["blob"] = (download.headers["x-content-sha256"], hashlib.sha256(download.content).hexdigest())
    return answers


# -- the test ---------------------------------------------------------------------------------------------------
def test_three_replicas_behind_haproxy_survive_a_sigkill_under_load(
    cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    lb, tokens, replicas = cluster.lb, cluster.tokens, cluster.replicas
    model, racing = unique("gapless"), unique("racing")
    base_bytes = b"base weights " + os.urandom(64)
    base_digest = hashlib.sha256(base_bytes).hexdigest()
    base: dict[str, Any] = {"path": "model.bin", "sha256": base_digest, "size": len(base_bytes)}

    # A receiver that takes a moment to answer, so the killed replica is likely to hold deliveries in flight.
    with (
        Receiver(respond=lambda hit: Reply(200, delay=0.2)) as rec,
        httpx.Client(base_url=lb.url, headers=bearer(tokens.maintainer), timeout=30) as api,
    ):
        # Set-up, through the balancer too.
        hook = api.post("/api/v1/webhooks", json={"url": rec.url, "events": EVENTS})
        assert hook.status_code == 201, hook.text
        rec.secrets = [hook.json()["secret"]]
        for name in (model, racing):
            assert api.post("/api/v1/models", json={"name": name}).status_code == 201
        assert api.put(f"/api/v1/blobs/{base_digest}", content=base_bytes).status_code == 201
        for _ in range(CONTESTANTS + 1):
            made = api.post(f"/api/v1/models/{racing}/versions", json={"files": [base]})
            assert made.status_code == 201, made.text

        load = Load(lb.url, tokens.writer, model, racing, base, tmp_path / "pushes")
        load.folder.mkdir()
        request.addfinalizer(load.abandon)
        load.enqueue(PHASE_A, after_down=False, seed=1)
        threads = load.start()

        # Mid-load: SIGKILL one replica, then see the balancer take it out of rotation.
        wait_until(lambda: load.done >= KILL_AFTER, timeout=120, interval=0.02, what="the load to be under way")
        routed_before_kill, done_at_kill = lb.routed()[VICTIM], load.done
        replicas[VICTIM].kill()
        killed_at = datetime.now(UTC)
        in_flight = held_by(cluster.database_url, VICTIM)  # read at once: its leases run out LEASE_SECONDS later
        lb.wait_for({VICTIM: "DOWN", **{n: "UP" for n in REPLICAS if n != VICTIM}})
        routed_at_down = lb.routed()
        load.enqueue(PHASE_B, after_down=True, seed=2)
        load.finish()
        for thread in threads:
            thread.join(timeout=240)
            assert not thread.is_alive(), "the load did not finish"
        routed_after_load = lb.routed()

        # Every committed event is delivered, the deliveries the dead replica held included (after their lease).
        events = [e for e in all_events(api) if e["type"] in EVENTS]

        def deliveries_settled() -> list[dict[str, Any]] | None:
            found = api.get("/api/v1/webhooks/deliveries", params={"limit": 1000}).json()
            done = len(found) == len(events) and {d["status"] for d in found} == {"succeeded"}
            return list(found) if done else None

        deliveries = wait_until(deliveries_settled, timeout=90, interval=0.2, what="every delivery to succeed")
        time.sleep(1.5)  # room for a second arrival of anything, were one coming

        # The killed replica comes back on its data dir and rejoins the rotation.
        replicas[VICTIM].start()
        replicas[VICTIM].wait_healthy()
        restarted_at = datetime.now(UTC)
        lb.wait_for(dict.fromkeys(REPLICAS, "UP"))

        listed = api.get(f"/api/v1/models/{model}/versions", params={"limit": 1000}).json()["items"]
        promotions = api.get(f"/api/v1/models/{racing}/promotions", params={"limit": 1000}).json()
        files_of = {}
        for number, _ in load.acked:
            got = api.get(f"/api/v1/models/{model}/versions/{number}")
            assert got.status_code == 200, got.text
            files_of[number] = [f["sha256"] for f in got.json()["files"]]
        downloads = {}
        for digest in load.pushed:
            got = api.get(f"/api/v1/blobs/{digest}")
            assert got.status_code == 200, got.text
            downloads[digest] = got.content
    received = rec.ids()
    hits = rec.snapshot()

    print(
        f"\nkilled {VICTIM} after {done_at_kill} ops ({routed_before_kill} sessions routed to it); "
        f"{len(load.failures)} failed attempts, {load.unanswered_writes} unanswered writes; "
        f"{len(load.acked)} versions acknowledged, {len(load.races)} races, {load.reads} reads; "
        f"{len(in_flight)} deliveries in flight on it, {sum(n - 1 for n in received.values())} delivered again; "
        f"sessions per replica {routed_after_load}"
    )

    # The kill landed in the middle of the load, on a replica that was taking traffic ...
    assert routed_before_kill > 0 and 0 < done_at_kill < sum(PHASE_A.values())
    # ... HAProxy stopped routing to it once its health checks failed ...
    assert routed_after_load[VICTIM] == routed_at_down[VICTIM]
    assert all(routed_after_load[n] > routed_at_down[n] for n in REPLICAS if n != VICTIM)
    # ... and the load completed on the other two: nothing sent after that failed, not even once.
    assert load.errors == []
    assert [f for f in load.failures if f.startswith("after")] == []
    assert load.done == sum(PHASE_A.values()) + sum(PHASE_B.values())

    # Gapless versions: 1..N without gaps or repeats; every acknowledged one is there with its file, and
    # the only ones nobody was told about are writes whose answer the kill swallowed.
    numbers = [v["version"] for v in listed]
    acked = [number for number, _ in load.acked]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(set(acked)) == len(acked) and set(acked) <= set(numbers)
    assert len(numbers) - len(acked) <= load.unanswered_writes
    assert all(files_of[number] == [digest] for number, digest in load.acked)

    # Acknowledged pushes: the blob reads back through the balancer with its sha256, and it is in S3.
    assert load.pushed and all(hashlib.sha256(data).hexdigest() == d for d, data in downloads.items())
    assert downloads == load.pushed
    listing = cluster.s3.client().list_objects_v2(Bucket=cluster.s3.bucket, Prefix=f"{cluster.prefix}/")
    in_s3 = {item["Key"] for item in listing.get("Contents", [])}
    assert {f"{cluster.prefix}/{blob_key(d)}" for d in [*load.pushed, base_digest]} <= in_s3
    for replica in replicas.values():  # spool files were handed to S3 (the killed one's swept at its restart)
        assert list((replica.data_dir / "tmp").glob("*.part")) == [], replica.name

    # One winner per race: at most one 200, every other answer 409 alias_moved, and exactly one move on
    # record (from v1), to the winner's version; a race sent after the kill settled has all its answers.
    assert len(load.races) == PHASE_A["race"] + PHASE_B["race"]
    for race in load.races:
        winners = [b for s, b in zip(race.statuses, race.bodies, strict=True) if s == 200]
        losers = [b for s, b in zip(race.statuses, race.bodies, strict=True) if s == 409]
        assert len(winners) <= 1 and all(b["code"] == "alias_moved" for b in losers), race
        if race.after_down or None not in race.statuses:
            assert len(winners) == 1 and len(losers) == CONTESTANTS - 1, race
        moves = [(p["from_version"], p["to_version"]) for p in promotions if p["alias"] == race.alias]
        assert len(moves) == 2 and moves[1] == (None, 1) and moves[0][0] == 1, (race, moves)
        if winners:
            assert moves[0][1] == winners[0]["to_version"]
        else:  # the winner's answer was lost with the replica: it was one of the unanswered contestants
            unanswered = {v for v, s in zip(range(2, CONTESTANTS + 2), race.statuses, strict=True) if s is None}
            assert moves[0][1] in unanswered, race

    # Every event delivered, signed, to the one endpoint: once, except that a delivery the dead replica had
    # in flight may arrive again after its lease ran out (at least once; receivers dedupe on webhook-id).
    assert all(h.verified for h in hits), "a request failed signature verification"
    assert {e["id"] for e in events} == set(received)
    assert {d["event_id"] for d in deliveries} == set(received)
    duplicated = {event_id for event_id, n in received.items() if n > 1}
    assert duplicated <= in_flight, f"delivered twice though not in flight on the killed replica: {duplicated}"
    assert len(events) >= len(load.acked) + 2 * len(load.races)

    # Each scheduler slot ran once across the replicas (the killed one's log included) ...
    # Logs first: every run logged by then was claimed before the rows are read.
    settled = datetime.now(UTC) - timedelta(seconds=5)
    logged = [run for replica in replicas.values() for run in replica.ran()]
    rows = query(
        cluster.database_url,
        select(SchedulerSlot.job, SchedulerSlot.slot_start, SchedulerSlot.claimed_by, SchedulerSlot.finished_at),
    )
    per_slot = Counter((job, slot) for job, slot, _ in logged)
    assert per_slot and set(per_slot.values()) == {1}, [k for k, n in per_slot.items() if n > 1]
    claimed = {(job, slot): who for job, slot, who, _ in rows}
    for job, slot, me in logged:
        assert claimed.get((job, slot)) == me, f"{me} ran {job} for {slot}, claimed by {claimed.get((job, slot))}"
    # ... each settled slot a live replica claimed ran there and was finished; only the killed replica may
    # have claimed a slot and died before running it (the next slot runs the job again).
    for job, slot, who, finished in rows:
        if slot >= settled or (who == VICTIM and slot < restarted_at):
            continue
        assert per_slot[(job, slot)] == 1 and finished is not None, (job, slot, who)
    reaps = [(slot, who) for job, slot, who, _ in rows if job == "deliveries.reap_stale_locks"]
    print(f"slots claimed per replica: {Counter(who for _, _, who, _ in rows)}")
    assert len({who for _, who in reaps}) >= 2, "the replicas should have raced for the slots"
    assert any(slot > killed_at and who != VICTIM for slot, who in reaps), "the survivors kept the schedule going"

    # The same answers from every replica, read directly, the restarted one included.
    aliases = [race.alias for race in load.races]
    blob = sorted(load.pushed)[0]
    answers = {name: snapshot(r.url, tokens.reader, model, racing, aliases, blob) for name, r in replicas.items()}
    first = answers[REPLICAS[0]]
    assert first["blob"] == (blob, blob)
    for name in REPLICAS[1:]:
        assert answers[name] == first, f"{name} answers differently from {REPLICAS[0]}"
