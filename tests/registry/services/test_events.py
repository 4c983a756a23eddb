"""The outbox's order: an event's ``seq`` is drawn only once its transaction has its turn, so seqs commit in
increasing order (a consumer reading ``after=SEQ`` never skips a row that commits late with a smaller seq)."""

from __future__ import annotations

import anyio
from sqlalchemy import text

from registry.db import Database
from registry.services import events


async def test_a_second_writer_draws_its_seq_only_after_the_first_commits(db: Database, backend: str) -> None:
    second_seq: list[int] = []

    async def second() -> None:
        async with db.write() as session:
            second_seq.append((await events.record(session, type="x.order", subject="b", actor="t", data={})).seq)

    async with anyio.create_task_group() as tg:
        async with db.write() as session:
            first = await events.record(session, type="x.order", subject="a", actor="t", data={"n": 1})
            tg.start_soon(second)
            await anyio.sleep(0.5)  # the second writer is waiting for its turn meanwhile
            assert second_seq == []
            if backend == "postgres":
                # It has not drawn a number yet: the sequence still stands at the first writer's seq.
                async with db.read_engine.connect() as other:
                    drawn = await other.scalar(
                        text("SELECT last_value FROM pg_sequences WHERE sequencename = 'events_seq_seq'")
                    )
                assert drawn == first.seq
    assert second_seq and second_seq[0] > first.seq
    async with db.read() as session:
        rows = (
            await session.execute(text("SELECT seq, data FROM events WHERE seq >= :s ORDER BY seq"), {"s": first.seq})
        ).all()
    assert rows[0][0] == first.seq and rows[1][0] == second_seq[0]
