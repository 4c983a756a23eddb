"""Engines and transaction boundaries.

The boundary that opens a session owns its transaction (one HTTP request, one CLI command, one job run):
``async with db.write() as session`` commits on success and rolls back on error; services only flush.

SQLite: writes take the database lock up front (``BEGIN IMMEDIATE``) through a single pooled connection,
so concurrent writers queue in-process instead of failing with SQLITE_BUSY when a read transaction tries
to upgrade to a write; reads use their own pool and never block under WAL. Writers in *other* processes
(``registry serve --workers N``) queue on an advisory file lock beside the database, which wakes the next
one as soon as the lock is free; SQLite's own busy handler would make them poll with sleeps of up to 100 ms,
which shows up as a long latency tail.

The SQLite write connection runs its statements on the event loop's own thread (``_LoopSQLite``).
aiosqlite hands every call (cursor, execute, fetch, close: three or four per statement) to a worker thread
and back, and on a 2-core machine those hand-offs cost more CPU than the statements: a version created
from a run folder took about twice the server CPU. Write transactions are short by design (they hold the
database's single write lock), so running them inline blocks the loop for about as long as the hand-offs
did. Reads keep aiosqlite's thread, since a long query (a million-point series, a search) must not stall
the other requests of its worker, except short ones: ``read(short=True)`` (one object and its few rows, as
in resolving an alias or authenticating a token) runs on the loop too, through a pool of its own.

The database holds webhook and trigger secrets and token hashes: its file, and with it the ``-wal`` and
``-shm`` files SQLite gives the same mode, and the lock file are created readable by the owner only.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

import aiosqlite
import anyio
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000

Session = AsyncSession
"""The session type services take; outer layers name it through here, not through SQLAlchemy."""


def async_url(url: str | URL) -> URL:
    """Map a plain database URL onto the async driver this service uses."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


class _LoopSQLite(aiosqlite.Connection):
    """An aiosqlite connection whose calls run right away on the calling (event loop) thread.

    aiosqlite routes every call through ``_execute``; this runs the call instead of queueing it for the
    worker thread. The thread still opens the connection, applies isolation-level changes made through
    SQLAlchemy's adapter, and closes it, so the sqlite3 connection is shared between two threads, never at
    the same time (each call is awaited before the next): hence ``check_same_thread=False``.
    ``tests/test_db.py`` checks that statements run on the loop's thread.
    """

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _loop_connector(path: str) -> Callable[[], Any]:
    async def connect() -> aiosqlite.Connection:
        create_private_file(path)  # the engine's do_connect hook does not run for a custom creator
        connection = _LoopSQLite(lambda: sqlite3.connect(path, check_same_thread=False), 64)
        # As SQLAlchemy does for the connections it makes: an engine not disposed of at exit must not keep
        # the interpreter alive waiting for the worker thread.
        thread = getattr(connection, "_thread", None)
        if isinstance(thread, threading.Thread):
            thread.daemon = True
        return await connection

    return connect


SHORT_READ_BUSY_TIMEOUT_MS = 1_000
"""A short read runs on the event loop: if SQLite ever makes a WAL reader wait (recovery after a crash, a
checkpoint by the last connection), it fails after a second rather than stall the worker's other requests."""


def _sqlite_engine(
    url: URL, *, immediate: bool, pool_size: int, on_loop: bool = False, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> AsyncEngine:
    # hide_parameters: a failed statement's error and log line must never carry its bound values
    # (webhook secrets, token hashes, user payloads).
    extra: dict[str, Any] = {}
    if on_loop and url.database:
        extra["async_creator"] = _loop_connector(url.database)
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=0, pool_timeout=120, hide_parameters=True, **extra
    )

    @event.listens_for(engine.sync_engine, "do_connect")
    def _before_connect(*_: Any) -> None:
        if url.database:
            create_private_file(url.database)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_private_file(path: str) -> None:
    """Create ``path`` empty and owner-only (0600) unless it exists; an existing file keeps its mode.

    SQLite would create the database with the process umask (0644 as a rule), and makes its ``-wal`` and
    ``-shm`` files take the database file's mode, so creating it first makes all three private. A missing
    folder is left for SQLite to report.
    """
    if path.startswith("file:") or os.path.exists(path):  # a URI filename: SQLite's own options apply
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except (FileExistsError, FileNotFoundError):
        pass


class _ProcessWriteLock:
    """An exclusive ``flock`` on ``path`` while a write transaction runs (POSIX only).

    Each turn opens the file anew, so every holder has its own open file description (the owner of a
    ``flock``) and closing it releases the lock, also when a waiter gave up mid-wait.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._local = anyio.Lock()
        """One waiter per process; the others queue here, in order."""

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self._local:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            await _flock_exclusive(fd)
            try:
                yield
            finally:
                os.close(fd)


async def _flock_exclusive(fd: int) -> None:
    """Lock ``fd``; on failure or cancellation ``fd`` ends up closed (at once, or by the waiting thread)."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    mutex = threading.Lock()
    state = {"done": False, "gave_up": False}

    def wait() -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            with mutex:
                state["done"] = True
                if state["gave_up"]:
                    os.close(fd)

    try:
        await anyio.to_thread.run_sync(wait, abandon_on_cancel=True)
    except BaseException:
        with mutex:
            state["gave_up"] = True
            if state["done"]:
                os.close(fd)
        raise


PING_AFTER_IDLE_S = 5.0


def _ping_when_idle(engine: AsyncEngine, idle_s: float) -> None:
    """Ping a pooled PostgreSQL connection before reuse only when it sat idle for ``idle_s`` or longer.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip added to every transaction, about
    a tenth of a registry write's CPU. A connection back in use within seconds was working when it was
    returned; one idle longer may have been closed by a database restart, a failover or an idle timeout on
    the way, and is replaced with the rest of the pool, as ``pool_pre_ping`` would. A restart in between
    fails the transactions that were already using a connection (as it would anyway), and the first error
    invalidates the rest of the pool.

    Short reads run without a transaction on the same pool; behind PgBouncer in transaction-pooling mode,
    where statements outside a transaction may reach different server connections, asyncpg's prepared
    statements break: point Modelkeep at PostgreSQL or at a session-pooling PgBouncer.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _reused(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_s:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # As pool_pre_ping does: this connection is replaced, and every other one opened before now is
            # replaced at its next checkout (a restart closed them all).
            raise InvalidatePoolError("connection was closed while idle in the pool") from exc


class Database:
    """Owns the engines of one database; ``write()``/``read()`` open transactions."""

    def __init__(self, url: str, *, pool_size: int = 10, ping_after_idle_s: float = PING_AFTER_IDLE_S) -> None:
        self.url = async_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            if self.url.database in (None, "", ":memory:"):
                raise ValueError("SQLite needs a file database (WAL is shared across connections)")
            self.write_engine = _sqlite_engine(self.url, immediate=True, pool_size=1, on_loop=True)
            self._write_lock = _ProcessWriteLock(f"{self.url.database}.write-lock") if os.name == "posix" else None
            self.read_engine = _sqlite_engine(self.url, immediate=False, pool_size=pool_size)
            self.short_read_engine = _sqlite_engine(
                self.url,
                immediate=False,
                pool_size=pool_size,
                on_loop=True,
                busy_timeout_ms=SHORT_READ_BUSY_TIMEOUT_MS,
            )
        else:
            self.write_engine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, hide_parameters=True
            )
            _ping_when_idle(self.write_engine, ping_after_idle_s)
            self.read_engine = self.write_engine
            # Same pool, no BEGIN/ROLLBACK round trips: under READ COMMITTED every statement of a transaction
            # takes its own snapshot anyway, so a few point reads see what they would inside one.
            self.short_read_engine = self.write_engine.execution_options(isolation_level="AUTOCOMMIT")
            self._write_lock = None
        self._writer = async_sessionmaker(self.write_engine, expire_on_commit=False, autoflush=False)
        self.on_commit: list[Callable[[], None]] = []
        """Called after a write transaction that recorded outbox events commits (wakes the dispatcher)."""
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False, autoflush=False)
        self._short_reader = async_sessionmaker(self.short_read_engine, expire_on_commit=False, autoflush=False)

    def pools(self) -> list[tuple[str, AsyncEngine, int]]:
        """``(name, engine, connections it may open)`` for each of this database's connection pools."""
        found = [("write", self.write_engine, _capacity(self.write_engine))]
        if self.read_engine is not self.write_engine:
            found.append(("read", self.read_engine, _capacity(self.read_engine)))
        if self.short_read_engine.pool is not self.write_engine.pool:
            found.append(("read-short", self.short_read_engine, _capacity(self.short_read_engine)))
        return found

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A read-write transaction: committed when the block ends, rolled back if it raises.

        Side effects wait for the commit: ``on_commit`` callbacks run only after it succeeded."""
        turn: AbstractAsyncContextManager[None] = self._write_lock.hold() if self._write_lock else nullcontext()
        async with turn, self._writer() as session:
            async with session.begin():
                yield session
            wrote_events = session.info.pop("outbox_written", False)
        if wrote_events:
            for callback in self.on_commit:
                callback()

    @asynccontextmanager
    async def read(self, *, short: bool = False) -> AsyncIterator[AsyncSession]:
        """A read-only transaction; closing the session ends it (anything written is discarded).

        Objects stay loaded after the block (close() detaches them without expiring, unlike rollback()).
        ``short``: a few point look-ups whose cost does not grow with the data (never a search, a listing or a
        series), and nothing written; on SQLite they run on the event loop's thread, saving aiosqlite's
        hand-offs, and on PostgreSQL without a transaction around them."""
        async with (self._short_reader if short else self._reader)() as session:
            yield session

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self.short_read_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.write_engine.dispose()

        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
            await self.short_read_engine.dispose()


def _capacity(engine: AsyncEngine) -> int:
    pool: Any = engine.pool  # a QueuePool: size() and the overflow it was made with
    return int(pool.size()) + max(0, int(getattr(pool, "_max_overflow", 0)))
