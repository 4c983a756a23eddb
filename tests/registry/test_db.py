"""SQLite writers in different processes take turns on the file lock beside the database.

Two ``Database`` objects on one file stand in for two worker processes: ``flock`` locks belong to an open
file description, so they exclude each other exactly as two processes would.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from registry.db import Database


async def _setup(path: Path) -> tuple[Database, Database]:
    first, second = Database(f"sqlite:///{path}"), Database(f"sqlite:///{path}")
    async with first.write() as session:
        await session.execute(text("CREATE TABLE log (who TEXT)"))
    return first, second


async def test_a_second_writer_waits_for_the_first_to_commit(tmp_path: Path) -> None:
    first, second = await _setup(tmp_path / "turns.db")
    order: list[str] = []

    async def other() -> None:
        async with second.write() as session:
            order.append("second in")
            await session.execute(text("INSERT INTO log VALUES ('second')"))

    try:
        async with anyio.create_task_group() as tg:
            async with first.write() as session:
                await session.execute(text("INSERT INTO log VALUES ('first')"))
                tg.start_soon(other)
                await anyio.sleep(0.3)  # the other writer is blocked on the lock meanwhile
                order.append("first commits")
        assert order == ["first commits", "second in"]
        async with first.read() as session:
            assert list((await session.execute(text("SELECT who FROM log"))).scalars()) == ["first", "second"]
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_writer_cancelled_while_waiting_leaves_the_lock_free(tmp_path: Path) -> None:
    first, second = await _setup(tmp_path / "cancel.db")
    try:
        async with first.write():
            with anyio.move_on_after(0.2) as waited:
                async with second.write():
                    raise AssertionError("entered while the other writer held the lock")
            assert waited.cancelled_caught
        with anyio.fail_after(5):  # the cancelled waiter released what it got: both can write again
            async with second.write() as session:
                await session.execute(text("INSERT INTO log VALUES ('second')"))
            async with first.write() as session:
                await session.execute(text("INSERT INTO log VALUES ('first')"))
    finally:
        await first.dispose()
        await second.dispose()


async def test_write_statements_run_on_the_loop_thread_and_reads_on_aiosqlites(tmp_path: Path) -> None:
    """The write connection skips aiosqlite's thread hand-offs; reads keep them (a long query must not stall
    the loop), except short ones. A SQL function reports which thread SQLite called it on."""
    import threading

    from sqlalchemy import event

    db = Database(f"sqlite:///{tmp_path / 'threads.db'}")

    def register(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.create_function("thread_id", 0, threading.get_ident)  # type: ignore[attr-defined]

    for engine in (db.write_engine, db.read_engine, db.short_read_engine):
        event.listen(engine.sync_engine, "connect", register)
    assert [name for name, _engine, _capacity in db.pools()] == ["write", "read", "read-short"]
    try:
        async with db.write() as session:
            await session.execute(text("CREATE TABLE t (x INTEGER)"))
            await session.execute(text("INSERT INTO t VALUES (1), (2)"))
            writer = await session.scalar(text("SELECT thread_id()"))
        async with db.read() as session:
            reader = await session.scalar(text("SELECT thread_id()"))
            assert await session.scalar(text("SELECT count(*) FROM t")) == 2  # committed
        async with db.read(short=True) as session:
            short = await session.scalar(text("SELECT thread_id()"))
            assert await session.scalar(text("SELECT count(*) FROM t")) == 2
        assert writer == threading.get_ident()
        assert reader != threading.get_ident()
        assert short == threading.get_ident()
        with anyio.fail_after(5):  # a short read sees each commit, and one that fails leaves its pool usable
            async with db.write() as session:
                await session.execute(text("INSERT INTO t VALUES (5)"))
            with pytest.raises(Exception, match="nowhere"):
                async with db.read(short=True) as session:
                    await session.execute(text("SELECT * FROM nowhere"))
            async with db.read(short=True) as session:
                assert await session.scalar(text("SELECT count(*) FROM t")) == 3
            async with db.write() as session:
                await session.execute(text("DELETE FROM t WHERE x = 5"))
        with anyio.fail_after(5):  # a failed write rolls back and leaves the connection usable
            try:
                async with db.write() as session:
                    await session.execute(text("INSERT INTO t VALUES (3)"))
                    await session.execute(text("INSERT INTO nowhere VALUES (1)"))
            except Exception as exc:
                assert "nowhere" in str(exc)
            async with db.write() as session:
                assert await session.scalar(text("SELECT count(*) FROM t")) == 2
    finally:
        await db.dispose()


async def test_a_postgresql_connection_closed_while_idle_is_replaced(database_url: str, backend: str) -> None:
    """Pooled PostgreSQL connections are pinged before reuse only after sitting idle (no round trip per
    transaction under load); one the server closed meanwhile is replaced, not handed to the request. With
    the idle mark out of reach, the same closed connection reaches the transaction and fails it."""
    if backend != "postgres":
        pytest.skip("SQLite connections are files, not sessions a server can close")
    from sqlalchemy.exc import DBAPIError

    from tests.conftest import _pg_admin

    async def pooled_pid(db: Database) -> int:
        async with db.read() as session:
            return int(await session.scalar(text("SELECT pg_backend_pid()")))

    for idle_s, replaced in ((0.0, True), (3600.0, False)):
        db = Database(database_url, pool_size=1, ping_after_idle_s=idle_s)
        try:
            pid = await pooled_pid(db)
            assert await pooled_pid(db) == pid  # the same pooled connection
            await _pg_admin(database_url, f"SELECT pg_terminate_backend({pid})")
            await anyio.sleep(0.2)
            if replaced:
                assert await pooled_pid(db) != pid
                async with db.write() as session:  # and the pool works on
                    assert await session.scalar(text("SELECT 1")) == 1
            else:
                with pytest.raises(DBAPIError):
                    await pooled_pid(db)
        finally:
            await db.dispose()


async def test_short_reads_on_postgresql_run_without_a_transaction(database_url: str, backend: str) -> None:
    """A short read's statements are sent without BEGIN/ROLLBACK around them: each is a transaction of its
    own (``now()`` is the transaction's start), where a plain read's share one, and nothing is left open."""
    if backend != "postgres":
        pytest.skip("SQLite's short reads are covered by the thread test above")
    db = Database(database_url, pool_size=2)
    try:
        stamps = {}
        for short in (True, False):
            async with db.read(short=short) as session:
                first = await session.scalar(text("SELECT now()"))
                await anyio.sleep(0.02)
                second = await session.scalar(text("SELECT now()"))
            stamps[short] = (first, second)
        assert stamps[True][0] != stamps[True][1]
        assert stamps[False][0] == stamps[False][1]
        assert [name for name, _engine, _capacity in db.pools()] == ["write"]  # one pool for all three
        async with db.write() as session:  # the shared pool still opens transactions for writes
            a = await session.scalar(text("SELECT now()"))
            b = await session.scalar(text("SELECT now()"))
            assert a == b
    finally:
        await db.dispose()
