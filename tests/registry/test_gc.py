"""Storage reclaim (`registry gc`, ``blobs.collect_garbage``) and retention (``events.prune``), on a fresh
database of each backend with a real local blob store; the race test pushes through real servers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

import registry.client as mk
from automations import retention, scheduler
from automations.domain import AutomationJob, Delivery, OutboxCursor
from monitoring.domain import MonitorBucket
from registry import errors, migrations
from registry.db import Database
from registry.domain.artifacts import Blob
from registry.domain.events import Event
from registry.services import artifacts, events, gc, runs
from registry.services.artifacts import ManifestEntry
from registry.settings import Settings
from registry.storage import BlobStore
from registry.storage.local import LocalBlobStore
from tests.automations.receivers import fresh_database, stack
from tests.conftest import unique
from tests.factories.models import create_version
from tests.factories.runs import WRITER
from tests.factories.webhooks import create_webhook
from tests.fixtures.seaweed import S3Server
from tests.registry.storage.test_s3 import make_store

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
GRACE = timedelta(seconds=0.3)
"""The race test's grace period: longer than one push takes here, shorter than the pauses between them."""


@pytest.fixture(scope="module")
def gc_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of its own: a collection with no grace period reclaims whatever nothing references."""
    with fresh_database(database_url, tmp_path_factory.mktemp("gc-db")) as url:
        yield url


@pytest.fixture(scope="module")
async def gdb(gc_url: str) -> AsyncIterator[Database]:
    database = Database(gc_url)
    await migrations.upgrade(database)
    yield database
    await database.dispose()


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


async def stored(db: Database, store: BlobStore, content: bytes, *, old: bool = True, spool: Path | None = None) -> str:
    """Put ``content`` in the store and record its row (backdated when ``old``); returns its digest."""
    sha = hashlib.sha256(content).hexdigest()
    folder = spool or (store.root.parent if isinstance(store, LocalBlobStore) else Path("."))
    part = folder / f"part-{uuid.uuid4().hex}"
    part.write_bytes(content)
    await store.put(sha, part)
    async with db.write() as session:
        await artifacts.record_blob(session, sha256=sha, size=len(content), store=store)
        if old:
            await session.execute(update(Blob).where(Blob.sha256 == sha).values(created_at=LONG_AGO))
    return sha


async def rows(db: Database, digests: list[str]) -> set[str]:
    async with db.read() as session:
        return set(await session.scalars(select(Blob.sha256).where(Blob.sha256.in_(digests))))


async def test_collects_old_unreferenced_blobs_and_keeps_the_rest(gdb: Database, store: LocalBlobStore) -> None:
    orphan = await stored(gdb, store, b"orphan " + uuid.uuid4().bytes)
    young = await stored(gdb, store, b"young " + uuid.uuid4().bytes, old=False)
    in_version = await stored(gdb, store, b"weights " + uuid.uuid4().bytes)
    in_run = await stored(gdb, store, b"run file " + uuid.uuid4().bytes)
    diff = await stored(gdb, store, b"git diff " + uuid.uuid4().bytes)
    in_artifact = await stored(gdb, store, b"dataset " + uuid.uuid4().bytes)
    sample = await stored(gdb, store, b"bucket sample " + uuid.uuid4().bytes)
    async with gdb.write() as session:
        entry = ManifestEntry(path="model.bin", sha256=in_version, size=len(b"weights ") + 16)
        version = await create_version(session, entries=[entry])
        run = await runs.create(session, actor=WRITER, git=runs.GitInfo(commit="abc", diff_sha256=diff))
        await artifacts.put_run_file(
            session, run_id=run.id, path="notes.txt", sha256=in_run, size=len(b"run file ") + 16
        )
        await artifacts.create_version(
            session,
            name=f"ds-{uuid.uuid4().hex[:8]}",
            kind="dataset",
            actor=WRITER,
            entries=[ManifestEntry(path="d.csv", sha256=in_artifact, size=len(b"dataset ") + 16)],
        )
        session.add(
            MonitorBucket(model_version_id=version.id, bucket_start=LONG_AGO, rows=1, profile=b"", sample_digest=sample)
        )
        # The factory's version recorded a fresh blob of its own and references it: also kept.
        await session.execute(update(Blob).values(created_at=LONG_AGO).where(Blob.sha256 != young))
    everything = [orphan, young, in_version, in_run, diff, in_artifact, sample]

    dry = await gc.collect(gdb, store, grace=timedelta(hours=24), dry_run=True)
    assert dry.dry_run and dry.digests == [orphan] and dry.blobs == 1 and dry.bytes == len(b"orphan ") + 16
    assert await rows(gdb, everything) == set(everything) and await store.exists(orphan)

    done = await gc.collect(gdb, store, grace=timedelta(hours=24))
    assert done.digests == [orphan] and not done.dry_run
    assert await rows(gdb, everything) == set(everything) - {orphan}
    assert not await store.exists(orphan)
    for kept in everything[1:]:
        assert await store.exists(kept)
    # Idempotent: nothing left to do.
    assert (await gc.collect(gdb, store, grace=timedelta(hours=24))).blobs == 0


async def test_collects_on_s3(gdb: Database, s3_server: S3Server, tmp_path: Path) -> None:
    s3 = make_store(s3_server, unique("gc"))
    try:
        orphan = await stored(gdb, s3, b"s3 orphan " + uuid.uuid4().bytes, spool=tmp_path)
        kept = await stored(gdb, s3, b"s3 weights " + uuid.uuid4().bytes, spool=tmp_path)
        async with gdb.write() as session:
            await create_version(
                session, entries=[ManifestEntry(path="w.bin", sha256=kept, size=len(b"s3 weights ") + 16)]
            )
        done = await gc.collect(gdb, s3, grace=timedelta(hours=1))
        assert orphan in done.digests and kept not in done.digests
        assert not await s3.exists(orphan) and await s3.exists(kept)
        assert await rows(gdb, [orphan, kept]) == {kept}
    finally:
        await s3.close()


async def test_an_upload_again_restarts_the_grace_period(gdb: Database, store: LocalBlobStore) -> None:
    content = b"uploaded twice " + uuid.uuid4().bytes
    sha = await stored(gdb, store, content)
    await stored(gdb, store, content, old=False)  # a push of the same content records it again
    assert (await gc.collect(gdb, store, grace=timedelta(hours=1))).blobs == 0
    assert await rows(gdb, [sha]) == {sha} and await store.exists(sha)


async def test_bytes_deleted_under_a_recording_upload_are_refused_not_recorded(
    gdb: Database, store: LocalBlobStore
) -> None:
    """The interleaving the gc lock exists for: an upload's put skipped (the bytes were there), gc deleted row and
    bytes, then the upload records its row. It must fail, not leave a row without bytes."""
    content = b"reclaimed under an upload " + uuid.uuid4().bytes
    sha = await stored(gdb, store, content)
    async with gdb.write() as session:
        doomed = await gc.condemn(session, digests=[sha], cutoff=datetime.now(UTC))
    assert doomed == {sha: len(content)}
    async with gdb.write() as session:
        assert await gc.release_bytes(session, digests=[sha], store=store) == [sha]
    with pytest.raises(artifacts.BlobReclaimed):
        async with gdb.write() as session:
            await artifacts.record_blob(session, sha256=sha, size=len(content), store=store)
    assert await rows(gdb, [sha]) == set()
    # Recorded again between the two steps: the row is back, so the bytes stay.
    sha2 = await stored(gdb, store, b"re-recorded " + uuid.uuid4().bytes)
    async with gdb.write() as session:
        await gc.condemn(session, digests=[sha2], cutoff=datetime.now(UTC))
    async with gdb.write() as session:
        await artifacts.record_blob(session, sha256=sha2, size=1, store=store)
    async with gdb.write() as session:
        assert await gc.release_bytes(session, digests=[sha2], store=store) == []
    assert await store.exists(sha2)


async def test_scheduled_collection_runs_once_per_slot(gdb: Database, gc_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=gc_url, gc_grace_hours=0, gc_interval_seconds=3600)
    blobs = LocalBlobStore(tmp_path / "blobs")  # the store the settings name
    sha = await stored(gdb, blobs, b"scheduled " + uuid.uuid4().bytes)
    [periodic] = [p for p in scheduler.schedule(settings) if p.name == "blobs.collect_garbage"]
    ran = await asyncio.gather(*(scheduler.run_once(gdb, settings, periodic, me=f"replica-{i}") for i in range(4)))
    assert sorted(ran) == [False, False, False, True]
    assert await rows(gdb, [sha]) == set() and not await blobs.exists(sha)
    assert "events.prune" in {p.name for p in scheduler.schedule(settings)}


def test_cli_dry_run_then_collect(gc_url: str, tmp_path: Path) -> None:
    async def seed() -> str:
        db = Database(gc_url)
        try:
            return await stored(db, LocalBlobStore(tmp_path / "blobs"), b"cli " + uuid.uuid4().bytes)
        finally:
            await db.dispose()

    sha = asyncio.run(seed())
    base = [sys.executable, "-m", "registry", "gc", "--json", "--database-url", gc_url, "--data-dir", str(tmp_path)]
    dry = json.loads(subprocess.run([*base, "--dry-run"], capture_output=True, check=True, text=True).stdout)
    assert dry["dry_run"] is True and sha in dry["digests"]
    assert (tmp_path / "blobs" / sha[:2] / sha[2:4] / sha).exists()
    kept = json.loads(
        subprocess.run([*base, "--grace-hours", "100000"], capture_output=True, check=True, text=True).stdout
    )
    assert kept["blobs"] == 0
    done = json.loads(subprocess.run(base, capture_output=True, check=True, text=True).stdout)
    assert sha in done["digests"] and not (tmp_path / "blobs" / sha[:2] / sha[2:4] / sha).exists()


async def test_retention_prunes_only_finished_and_passed(gdb: Database) -> None:
    old = datetime.now(UTC) - timedelta(days=100)
    async with gdb.write() as session:
        hook = await create_webhook(session)
        made = [await events.record(session, type="x.test", subject="s", actor="a", data={}) for _ in range(6)]
    done_evt, pending_evt, job_evt, bare_evt, young_evt, ahead_evt = (e.seq for e in made)
    async with gdb.write() as session:
        await session.execute(update(Event).where(Event.seq != young_evt).values(created_at=old))
        session.add_all(
            [
                Delivery(event_seq=done_evt, webhook_id=hook.id, status="succeeded", updated_at=old),
                Delivery(event_seq=pending_evt, webhook_id=hook.id, status="pending", updated_at=old),
                AutomationJob(kind="promote", params={}, event_seq=job_evt, actor="a", role="writer", status="running"),
                AutomationJob(kind="promote", params={}, actor="a", role="writer", status="failed", updated_at=old),
            ]
        )
        # The dispatcher's cursor has passed every event but the last.
        await session.execute(update(OutboxCursor).values(seq=ahead_evt - 1))
        if await session.scalar(select(func.count()).select_from(OutboxCursor)) == 0:
            session.add(OutboxCursor(name="automations", seq=ahead_evt - 1))
    async with gdb.write() as session:
        pruned = await retention.prune(session, event_days=30, delivery_days=30)
    assert (pruned.deliveries, pruned.jobs) == (1, 1)
    async with gdb.read() as session:
        left = set(await session.scalars(select(Event.seq).where(Event.seq.in_([e.seq for e in made]))))
        statuses = sorted(await session.scalars(select(Delivery.status).where(Delivery.webhook_id == hook.id)))
        jobs = list(await session.scalars(select(AutomationJob.status).where(AutomationJob.actor == "a")))
    assert left == {pending_evt, job_evt, young_evt, ahead_evt} and not {done_evt, bare_evt} & left
    assert statuses == ["pending"] and jobs == ["running"]
    async with gdb.write() as session:  # a retention of 0 keeps everything
        assert not await retention.prune(session, event_days=0, delivery_days=0)


@pytest.mark.slow
def test_gc_racing_pushes_of_the_same_content_never_loses_a_version(database_url: str, tmp_path: Path) -> None:
    """Pushes of one folder (then deletes of the versions, so its blobs become garbage again) race back-to-back
    collections with a grace period shorter than the time between pushes, so a push that finds its blobs stored
    (and skips uploading them) races their reclaim. A push may be refused (its blob was reclaimed under it) and is
    retried; every version that was created pulls with correct sha256s, and no blob row outlives its bytes.
    (With no grace at all, a collection reclaims every upload before its version exists: pushes never finish.)"""
    folders, contents = [], []
    for pair in range(2):  # two workers push each folder: the same content, many times, from two sides
        folder = tmp_path / f"model-{pair}"
        folder.mkdir()
        files = {f"part-{i}.bin": (f"content {pair}.{i} ".encode() * 5000) for i in range(3)}
        for name, content in files.items():
            (folder / name).write_bytes(content)
        folders.append(folder)
        contents.append(files)
    with stack(database_url, tmp_path) as stk:
        server = stk.serve()
        blobs = LocalBlobStore(stk.folder / "blobs")
        stop = threading.Event()
        reclaimed: list[int] = []

        def collector() -> None:
            async def loop() -> None:
                db = Database(stk.database_url, pool_size=2)
                try:
                    while not stop.is_set():
                        reclaimed.append((await gc.collect(db, blobs, grace=GRACE)).blobs)
                finally:
                    await db.dispose()

            asyncio.run(loop())

        kept: list[tuple[int, int]] = []
        refused: list[str] = []
        failures: list[BaseException] = []

        def pusher(worker: int) -> None:
            try:
                with mk.RegistryClient(server.url, stk.tokens.admin) as api:
                    model = f"race-{worker}"
                    rounds = 8
                    for round_no in range(rounds):
                        for _attempt in range(20):
                            try:
                                version = api.push(model, folders[worker // 2])
                                break
                            except (errors.InvalidInput, errors.Conflict) as exc:
                                refused.append(exc.message)
                        else:
                            raise AssertionError("a push never got through")
                        dest = tmp_path / f"pull-{worker}-{round_no}"
                        api.pull(f"{model}/{version['version']}", dest)  # verifies every sha256
                        if round_no == rounds - 1:
                            kept.append((worker, version["version"]))
                        else:  # unreferenced again (unless the other side holds it): garbage once past the grace
                            api.json("DELETE", f"/api/v1/models/{model}/versions/{version['version']}")
                            time.sleep(random.uniform(0, 2 * GRACE.total_seconds()))
            except BaseException as exc:
                failures.append(exc)

        gc_thread = threading.Thread(target=collector)
        gc_thread.start()
        workers = [threading.Thread(target=pusher, args=(w,)) for w in range(4)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        stop.set()
        gc_thread.join()
        assert failures == []
        assert sum(reclaimed) > 0, "the collector never reclaimed anything: no race happened"
        assert all("was not uploaded" in m or "reclaimed" in m for m in refused), refused
        print(f"reclaimed {sum(reclaimed)} blobs in {len(reclaimed)} collections; {len(refused)} pushes refused")

        with mk.RegistryClient(server.url, stk.tokens.admin) as api:
            assert len(kept) == 4
            for worker, number in kept:
                dest = tmp_path / f"final-{worker}"
                api.pull(f"race-{worker}/{number}", dest)
                for name, content in contents[worker // 2].items():
                    assert hashlib.sha256((dest / name).read_bytes()).hexdigest() == hashlib.sha256(content).hexdigest()

        async def every_row_has_bytes() -> list[str]:
            db = Database(stk.database_url)
            try:
                async with db.read() as session:
                    digests = list(await session.scalars(select(Blob.sha256)))
            finally:
                await db.dispose()
            return [d for d in digests if not (blobs.path_of(d)).exists()]

        assert asyncio.run(every_row_has_bytes()) == []


def test_push_uploads_again_what_a_collection_reclaimed_under_it(database_url: str, tmp_path: Path) -> None:
    """``push`` skips blobs the server has; when a collection reclaims one of them before the version is created,
    the server answers ``blob_missing`` and the client uploads what is missing and creates the version after all."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"weights " * 4096)
    with stack(database_url, tmp_path) as stk:
        server = stk.serve()
        blobs = LocalBlobStore(stk.folder / "blobs")
        collected: list[int] = []

        class Collecting(mk.RegistryClient):
            """Runs one collection between the push's blob check and its version creation."""

            def ensure_model(self, name: str) -> dict[str, object]:
                if not collected:
                    collected.append(asyncio.run(_collect_now(stk.database_url, blobs)))
                return super().ensure_model(name)

        with mk.RegistryClient(server.url, stk.tokens.admin) as api:
            first = api.push("reclaimed", folder)
            api.json("DELETE", f"/api/v1/models/reclaimed/versions/{first['version']}")  # its blob is garbage now
        with Collecting(server.url, stk.tokens.admin) as api:
            again = api.push("reclaimed", folder)
            assert collected == [1]  # the collection did reclaim the blob the push had found stored
            api.pull(f"reclaimed/{again['version']}", tmp_path / "pulled")  # verifies the sha256
        assert (tmp_path / "pulled" / "weights.bin").read_bytes() == (folder / "weights.bin").read_bytes()


async def _collect_now(database_url: str, blobs: BlobStore) -> int:
    db = Database(database_url, pool_size=1)
    try:
        return (await gc.collect(db, blobs, grace=timedelta(0))).blobs
    finally:
        await db.dispose()
