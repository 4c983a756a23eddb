"""Production rows from serving (or training) code to the registry's monitor, without getting in the way::

    from registry.client import Monitor

    monitor = Monitor("fraud")                       # alias production; MODELKEEP_URL / MODELKEEP_TOKEN
    ...
    monitor.log({"amount": 12.5, "country": "DE", "score": 0.91})   # in the request handler
    ...
    monitor.close()                                  # or `with Monitor(...) as monitor:`; also done at exit

``log`` only appends to a buffer under a lock. A background thread turns the buffer into Parquet batches of
``batch_rows`` rows (at least every ``flush_interval`` seconds) and POSTs them to
``/api/v1/models/{model}/monitor/batches``, where the alias is resolved, so each row counts for the version
that was serving when it arrived.

The monitor never stops the caller and never grows without bound; it counts what it could not deliver:

* ``dropped_rows``: rows refused because ``max_buffered_rows`` were already waiting (the registry is slow or
  away), batches given up after ``max_attempts`` tries while the registry was unreachable or answered 5xx,
  and rows still waiting when ``close`` ran out of time;
* ``rejected_rows``: batches the registry refused (a 4xx: a schema mismatch with the baseline, a model
  without a baseline, a bad token ...). Sending them again cannot succeed, so they are not retried; the first
  refusal is logged as an error, with the registry's message.

Each batch carries the time its rows were logged (``at``), so rows that wait through a retry still land in
the hourly bucket they belong to; a batch never spans two hours. Rows with the baseline's timestamp column
are bucketed by that column.
"""

from __future__ import annotations

import atexit
import io
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from registry import errors
from registry.client._http import ServerError
from registry.client.api import RegistryClient, q

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

HOUR = 3600.0
PARQUET = "application/vnd.apache.parquet"
MAX_RETRY_DELAY = 30.0


@dataclass(slots=True)
class _Chunk:
    """Rows logged in one UTC hour, in the order they came: dicts (``log``) or an Arrow table (``log_table``)."""

    at: float
    """When the first of them was logged (epoch seconds)."""
    hour: int
    rows: list[Mapping[str, Any]] | None = None
    table: pa.Table | None = None

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else (self.table.num_rows if self.table is not None else 0)


def rows_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    """Dict rows as a table with a column for every key any row has (missing values are nulls).

    ``pa.Table.from_pylist`` would take the columns of the first row only and silently lose the others."""
    import pyarrow as pa

    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    return pa.table({key: pa.array([row.get(key) for row in rows]) for key in keys})


def encode(chunks: list[_Chunk]) -> bytes:
    """One Parquet file of the chunks' rows, column types widened where chunks differ (int and float ...).

    Raises pyarrow's ArrowException when the values cannot be made into one table (unsupported Python
    objects, a column that is text in one chunk and numbers in another)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [chunk.table if chunk.table is not None else rows_table(chunk.rows or []) for chunk in chunks]
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


class Monitor:
    """Buffered, batched production rows for ``model`` at ``alias`` (or a fixed ``version``).

    Every method is safe to call from any thread. ``log``, ``log_rows`` and ``log_table`` never wait on the
    network and never raise because the registry is slow, away or refusing: see the module docstring for
    what happens to the rows then, and ``dropped_rows`` / ``rejected_rows`` / ``sent_rows`` for the counts.

    ``url``/``token`` default to MODELKEEP_URL / MODELKEEP_TOKEN (or pass a ``client``, which the monitor
    then uses from its background thread only and does not close). ``timeout`` bounds each request;
    ``max_attempts`` counts the tries of a batch while the registry is unreachable or answers 5xx (1 s, 2 s,
    4 s ... apart, at most 30 s).
    """

    def __init__(
        self,
        model: str,
        alias: str | None = "production",
        *,
        version: int | None = None,
        url: str | None = None,
        token: str | None = None,
        client: RegistryClient | None = None,
        batch_rows: int = 5000,
        flush_interval: float = 5.0,
        max_buffered_rows: int = 100_000,
        max_attempts: int = 3,
        retry_delay: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        if version is not None:
            alias = None
        if alias is None and version is None:
            raise ValueError("name an alias (production) or a version")
        if batch_rows < 1 or max_buffered_rows < batch_rows:
            raise ValueError("batch_rows must be at least 1 and at most max_buffered_rows")
        if flush_interval <= 0 or max_attempts < 1 or retry_delay < 0:
            raise ValueError("flush_interval must be positive, max_attempts at least 1, retry_delay not negative")
        self.model = model
        self.alias = alias
        self.version = version
        self._path = f"/api/v1/models/{q(model)}/monitor/batches"
        self._owns_client = client is None
        self._client = client or RegistryClient(url, token, timeout=timeout)
        self._batch_rows = batch_rows
        self._interval = flush_interval
        self._max_buffered = max_buffered_rows
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay

        self._lock = threading.Lock()
        # Signalled whenever rows leave (sent, dropped, rejected), so flush() can wait for its rows.
        self._settled_cond = threading.Condition(self._lock)
        self._chunks: deque[_Chunk] = deque()
        self._waiting = 0
        """Rows in ``_chunks``."""
        self._in_flight = 0
        """Rows the sender has taken and not settled yet: they still count against ``max_buffered_rows``."""
        self._accepted = 0
        """Rows ever taken into the buffer; ``flush`` waits until ``_settled`` reaches its value at the call."""
        self._settled = 0
        self._urgent = 0
        """Send what is waiting without waiting for a full batch, until ``_settled`` reaches this."""
        self.sent_rows = 0
        self.dropped_rows = 0
        self.rejected_rows = 0
        self.requests = 0
        self.last_error: errors.RegistryError | None = None
        self._outage = False
        self._warned_full = False
        self._warned_rejected = False
        self._closed = False

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="modelkeep-monitor-flush", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # -- logging (the caller's thread: a lock and an append, nothing else) ------------------------------------
    def log(self, row: Mapping[str, Any]) -> None:
        """Buffer one row (column name → value; copied, values are not)."""
        now = time.time()
        hour = int(now // HOUR)
        with self._lock:
            if not self._room(1):
                return
            last = self._chunks[-1] if self._chunks else None
            if last is None or last.rows is None or last.hour != hour or len(last.rows) >= self._batch_rows:
                last = _Chunk(at=now, hour=hour, rows=[])
                self._chunks.append(last)
            assert last.rows is not None
            last.rows.append(dict(row))  # a copy: serving code may reuse or change its dict after the call
            self._took(1)

    def log_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Buffer several rows; those beyond the buffer's room are dropped (and counted)."""
        for row in rows:
            self.log(row)

    def log_table(self, table: pa.Table) -> None:
        """Buffer an Arrow table's rows (sliced into batches, without copying); those beyond the buffer's room
        are dropped (and counted)."""
        now = time.time()
        hour = int(now // HOUR)
        with self._lock:
            room = self._room(table.num_rows)
            if room < table.num_rows:
                table = table.slice(0, room)
            for offset in range(0, table.num_rows, self._batch_rows):
                self._chunks.append(_Chunk(at=now, hour=hour, table=table.slice(offset, self._batch_rows)))
            self._took(table.num_rows)

    def _room(self, wanted: int) -> int:
        """How many of ``wanted`` rows fit (under the lock); the rest are counted as dropped."""
        if self._closed:
            room = 0
        else:
            room = max(0, min(wanted, self._max_buffered - self._waiting - self._in_flight))
        if room < wanted:
            self.dropped_rows += wanted - room
            if not self._warned_full:
                self._warned_full = True
                why = "the monitor is closed" if self._closed else f"{self._max_buffered} rows are already waiting"
                log.warning("modelkeep: dropping monitored rows of %s: %s (counted in dropped_rows)", self.model, why)
        return room

    def _took(self, rows: int) -> None:
        self._waiting += rows
        self._accepted += rows
        if self._waiting >= self._batch_rows:
            self._wake.set()

    @property
    def pending_rows(self) -> int:
        """Rows buffered or being sent."""
        with self._lock:
            return self._waiting + self._in_flight

    # -- sending (the background thread) ------------------------------------------------------------------
    def _take(self, *, partial: bool) -> list[_Chunk]:
        """The next batch: up to ``batch_rows`` rows of one hour, oldest first; nothing while less than a batch
        waits, unless ``partial``."""
        with self._lock:
            if not self._chunks or (not partial and self._waiting < self._batch_rows):
                return []
            batch = [self._chunks.popleft()]
            rows = len(batch[0])
            while self._chunks and self._chunks[0].hour == batch[0].hour:
                if rows + len(self._chunks[0]) > self._batch_rows:
                    break
                batch.append(self._chunks.popleft())
                rows += len(batch[-1])
            self._waiting -= rows
            self._in_flight += rows
            return batch

    def _settle(self, rows: int, outcome: str) -> None:
        with self._lock:
            self._in_flight -= rows
            self._settled += rows
            if outcome == "sent":
                self.sent_rows += rows
            elif outcome == "rejected":
                self.rejected_rows += rows
            else:
                self.dropped_rows += rows
            self._settled_cond.notify_all()

    def _send(self, batch: list[_Chunk]) -> None:
        """Send one batch: retried while the registry is away, then dropped; refused (4xx) at once."""
        rows = sum(len(chunk) for chunk in batch)
        try:
            body = encode(batch)
        except Exception as exc:  # pyarrow's errors: values that do not make a table
            self._rejected(rows, errors.InvalidInput(f"the rows cannot be written as Parquet: {exc}"))
            return
        params: dict[str, Any] = {"at": datetime.fromtimestamp(batch[0].at, UTC).isoformat()}
        params |= {"alias": self.alias} if self.alias is not None else {"version": self.version}
        headers = {"content-type": PARQUET}
        for attempt in range(1, self._max_attempts + 1):
            try:
                self._client.request("POST", self._path, params=params, content=body, headers=headers)
            except ServerError as exc:
                self.last_error = exc
                if not self._outage:
                    self._outage = True
                    log.warning("modelkeep: cannot send monitored rows of %s (%s); retrying", self.model, exc)
                # Bounded: while the registry is away the rows behind this batch pile up, and past
                # max_buffered_rows they are dropped anyway; a batch held forever would only delay newer ones.
                # Once closing has run out of time (stop is set) no batch waits for another try.
                if attempt < self._max_attempts and not self._stop.wait(self._backoff(attempt)):
                    continue
                log.warning("modelkeep: dropped %d monitored rows of %s after %d tries", rows, self.model, attempt)
                self._settle(rows, "dropped")
                return
            except errors.RegistryError as exc:
                self._rejected(rows, exc)
                return
            except Exception:  # not the registry's answer (a bad URL ...): the rows must not stay in flight
                log.exception("modelkeep: sending %d monitored rows of %s failed; dropped", rows, self.model)
                self._settle(rows, "dropped")
                return
            self.requests += 1
            if self._outage:
                self._outage = False
                log.warning("modelkeep: the registry takes monitored rows of %s again", self.model)
            self._settle(rows, "sent")
            return

    def _backoff(self, attempt: int) -> float:
        """Seconds before try ``attempt + 1``: 1, 2, 4 ... times ``retry_delay``, at most MAX_RETRY_DELAY."""
        return float(min(self._retry_delay * 2 ** (attempt - 1), MAX_RETRY_DELAY))

    def _rejected(self, rows: int, exc: errors.RegistryError) -> None:
        self.last_error = exc
        # Once: the same mistake (a missing column, a model without a baseline) repeats for every batch.
        if not self._warned_rejected:
            self._warned_rejected = True
            log.error("modelkeep: the registry refused %d monitored rows of %s: %s", rows, self.model, exc)
        self._settle(rows, "rejected")

    def _loop(self) -> None:
        next_due = time.monotonic() + self._interval
        while True:
            self._wake.wait(max(0.0, next_due - time.monotonic()))
            self._wake.clear()
            stopping = self._stop.is_set()
            # Full batches go as soon as they are full; what is left of one goes every flush_interval, when
            # flush() asks for it, and at the end.
            partial = stopping or time.monotonic() >= next_due or self._flush_asked()
            if partial:
                next_due = time.monotonic() + self._interval
            try:
                while batch := self._take(partial=partial):
                    self._send(batch)
            except Exception:  # a bug must not end the thread: the caller's rows would pile up unseen
                log.exception("modelkeep: sending monitored rows failed")
            if stopping:
                return

    def _flush_asked(self) -> bool:
        with self._lock:
            return self._settled < self._urgent

    # -- flushing and closing -----------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Send every row logged so far; wait until each is sent, dropped or refused (at most ``timeout``
        seconds). Returns True when none is left waiting."""
        with self._lock:
            target = self._accepted
            self._urgent = max(self._urgent, target)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._settled < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if not self._thread.is_alive():
                    return False
                self._settled_cond.wait(left if left is not None else 1.0)
            return True

    def close(self, timeout: float = 30.0) -> None:
        """Send what is left (waiting at most ``timeout`` seconds), stop the thread. Rows still waiting then
        are dropped (counted). Idempotent; ``log`` after it drops rows."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self._at_exit)
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=1.0)
        with self._lock:
            left, self._waiting = self._waiting, 0
            self._chunks.clear()
            self.dropped_rows += left
            self._settled += left
            self._settled_cond.notify_all()
        if left:
            log.warning("modelkeep: %d monitored rows of %s were not sent before close", left, self.model)
        # A request still in flight (a registry that does not answer) keeps its client; it dies with the thread.
        if self._owns_client and not self._thread.is_alive():
            self._client.close()

    def _at_exit(self) -> None:
        try:
            self.close(timeout=5.0)
        except Exception as exc:
            log.error("modelkeep: closing the monitor of %s at exit failed: %s", self.model, exc)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        target = f"{self.model}@{self.alias}" if self.alias is not None else f"{self.model}/{self.version}"
        return (
            f"Monitor({target}, pending={self.pending_rows}, sent={self.sent_rows}, "
            f"dropped={self.dropped_rows}, rejected={self.rejected_rows})"
        )
