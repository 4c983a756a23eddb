"""How often the dispatcher writes: an idle poll asks read-only and writes nothing; events nobody subscribes to
cost one round per poll interval, not one per commit; a round runs once per wake-up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from automations.dispatcher import Dispatcher
from automations.domain import OutboxCursor
from automations.fanout import CURSOR
from registry import migrations
from registry.db import Database, Session
from registry.services import events
from registry.settings import Settings
from registry.storage.local import LocalBlobStore


@pytest.fixture
async def fresh(tmp_path: Path) -> AsyncIterator[Database]:
    """A database of its own: whether any webhook or rule is enabled must be known here."""
    db = Database(f"sqlite:///{tmp_path / 'rounds.db'}")
    await migrations.upgrade(db)
    yield db
    await db.dispose()


class Writes:
    """Counts the write transactions opened through ``db.write``."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        inner = db.write

        @asynccontextmanager
        async def counted() -> AsyncIterator[Session]:
            self.count += 1
            async with inner() as session:
                yield session

        db.write = counted  # type: ignore[method-assign]


@pytest.fixture
def dispatcher(fresh: Database, tmp_path: Path) -> Iterator[Dispatcher]:
    settings = Settings(data_dir=tmp_path, database_url=str(fresh.url), dispatcher_poll_seconds=30)
    yield Dispatcher(fresh, LocalBlobStore(tmp_path / "blobs"), settings)


async def record(db: Database, n: int) -> int:
    async with db.write() as session:
        seq = 0
        for i in range(n):
            seq = (await events.record(session, type="x.rounds", subject=f"s{i}", actor="t", data={})).seq
    return seq


async def cursor(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(OutboxCursor.seq).where(OutboxCursor.name == CURSOR)) or 0)


async def test_an_idle_poll_writes_nothing(fresh: Database, dispatcher: Dispatcher) -> None:
    await dispatcher.tick()  # the first round makes the cursor row
    writes = Writes(fresh)
    for _ in range(5):
        assert await dispatcher.tick(scope="probe") is False
    assert writes.count == 0
    last = await record(fresh, 1)
    writes.count = 0
    assert await dispatcher.tick(scope="probe") is False  # it found the event and ran one round for it
    assert writes.count == 1 and await cursor(fresh) == last


async def test_unsubscribed_events_move_the_cursor_once_per_interval(fresh: Database, dispatcher: Dispatcher) -> None:
    first = await record(fresh, 3)
    writes = Writes(fresh)
    assert await dispatcher.tick(scope="events") is False  # one round per wake-up, not a second to check
    assert writes.count == 1 and await cursor(fresh) == first
    later = await record(fresh, 2)
    writes.count = 0
    for _ in range(3):  # more commits within the poll interval: nobody subscribes, nothing to do yet
        await dispatcher.tick(scope="events")
    assert writes.count == 0 and await cursor(fresh) == first
    await dispatcher.tick(scope="probe")  # the next poll moves past them
    assert writes.count == 1 and await cursor(fresh) == later
