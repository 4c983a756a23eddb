"""The SDK's ``Monitor`` against a real `registry serve` on loopback (SQLite and PostgreSQL), and against loopback
peers that stand in for a registry that is away: one that never answers, one that answers 503."""

from __future__ import annotations

import http.server
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.client import Monitor
from registry.client._http import ServerError
from registry.db import Database
from registry.errors import InvalidInput
from tests.automations.receivers import model_with_versions
from tests.conftest import LiveServer, Tokens, bearer, start_server, stop_server, unique
from tests.monitoring.monitor_helpers import BASELINE_OPTIONS, PARQUET, buckets, frame, parquet


@pytest.fixture
def api(live_server: LiveServer, api_tokens: Tokens) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, headers=bearer(api_tokens.admin), timeout=30) as client:
        yield client


def monitored_model(api: httpx.Client) -> str:
    """A model whose version 1 has a baseline and is in production."""
    name = unique("sdk-mon")
    model_with_versions(api, name, 1)
    made = api.put(
        f"/api/v1/models/{name}/versions/1/monitor/baseline",
        content=parquet(frame(2000, seed=1)),
        headers=PARQUET,
        params=BASELINE_OPTIONS,
    )
    assert made.status_code == 200, made.text
    assert api.put(f"/api/v1/models/{name}/aliases/production", json={"version": 1}).status_code == 200
    return name


@pytest.fixture
def silent_peer() -> Iterator[socket.socket]:
    """A loopback socket that takes connections (the kernel completes them) and never answers a request."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield listener
    finally:
        listener.close()


def url_of(listener: socket.socket) -> str:
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


async def test_rows_logged_three_ways_arrive_in_the_versions_buckets(
    live_server: LiveServer, api_tokens: Tokens, api: httpx.Client, db: Database
) -> None:
    model = monitored_model(api)
    table = frame(1000, seed=2)
    rows = table.to_pylist()
    with Monitor(model, url=live_server.url, token=api_tokens.writer, batch_rows=400, flush_interval=0.2) as monitor:
        for row in rows[:300]:
            monitor.log(row)
        monitor.log_rows(rows[300:500])
        monitor.log_table(table.slice(500))
        assert monitor.flush()
        assert (monitor.sent_rows, monitor.dropped_rows, monitor.rejected_rows) == (1000, 0, 0)
        assert monitor.requests >= 3  # batches of at most 400 rows
    stored = await buckets(db, model, 1)
    assert sum(b.rows for b in stored) == 1000
    assert monitor.pending_rows == 0 and "sent=1000" in repr(monitor)


def test_refused_rows_are_counted_and_not_retried(
    live_server: LiveServer, api_tokens: Tokens, api: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    model = monitored_model(api)
    rows = frame(30, seed=3).drop_columns(["amount"]).to_pylist()  # the baseline monitors amount
    with caplog.at_level(logging.ERROR, logger="registry.client.monitor"):
        with Monitor(model, url=live_server.url, token=api_tokens.writer, batch_rows=10) as monitor:
            monitor.log_rows(rows)
            assert monitor.flush()
    assert (monitor.sent_rows, monitor.rejected_rows, monitor.dropped_rows) == (0, 30, 0)
    assert isinstance(monitor.last_error, InvalidInput) and "amount" in str(monitor.last_error)
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1  # logged once, for three refused batches


def test_a_reader_token_is_refused_not_retried(live_server: LiveServer, api_tokens: Tokens, api: httpx.Client) -> None:
    model = monitored_model(api)
    with Monitor(model, url=live_server.url, token=api_tokens.reader, max_attempts=5, retry_delay=60) as monitor:
        monitor.log_rows(frame(5, seed=4).to_pylist())
        assert monitor.flush()  # with five tries 60 s apart this would not settle before the test's timeout
    assert (monitor.rejected_rows, monitor.sent_rows) == (5, 0)


def test_log_returns_while_a_batch_waits_on_a_registry_that_does_not_answer(silent_peer: socket.socket) -> None:
    rows = frame(11, seed=5).to_pylist()
    monitor = Monitor("fraud", url=url_of(silent_peer), token="t", batch_rows=10, timeout=600, max_attempts=1)
    monitor.log_rows(rows[:10])  # a full batch: the background thread sends it at once
    connection, _ = silent_peer.accept()  # ... and is now waiting for an answer that does not come
    try:
        received = b""
        while b"\r\n\r\n" not in received:
            received += connection.recv(65536)
        assert received.startswith(b"POST /api/v1/models/fraud/monitor/batches?")
        monitor.log(rows[10])  # returns, although the only request is still unanswered
        assert monitor.pending_rows == 11 and monitor.sent_rows == 0
    finally:
        connection.close()  # the registry goes away: the batch fails, and with max_attempts=1 it is dropped
    silent_peer.close()
    monitor.close(timeout=60)
    assert (monitor.sent_rows, monitor.dropped_rows, monitor.rejected_rows) == (0, 11, 0)
    assert isinstance(monitor.last_error, ServerError)


def test_the_buffer_is_bounded_and_counts_what_it_drops(silent_peer: socket.socket) -> None:
    monitor = Monitor(
        "fraud", url=url_of(silent_peer), token="t", batch_rows=10, max_buffered_rows=100, timeout=600, max_attempts=1
    )
    row = frame(1, seed=6).to_pylist()[0]
    for _ in range(1000):
        monitor.log(row)
    # At most one batch is in flight (unanswered) and it counts against the bound like the rows waiting.
    assert monitor.pending_rows == 100 and monitor.dropped_rows == 900
    monitor.log_table(frame(50, seed=7))
    assert monitor.pending_rows == 100 and monitor.dropped_rows == 950
    silent_peer.close()  # connections not yet accepted are reset: the registry is gone
    monitor.close(timeout=60)
    assert monitor.dropped_rows == 1050 and monitor.sent_rows == 0 and monitor.pending_rows == 0
    monitor.log(row)  # after close, rows are dropped (counted), never an exception in the caller
    assert monitor.dropped_rows == 1051


@pytest.fixture
def failing_peer() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that answers every request with a 503 problem; yields its URL and the paths of
    the requests it received."""
    seen: list[str] = []

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            seen.append(self.path)
            body = b'{"status": 503, "detail": "database unavailable"}'
            self.send_response(503)
            self.send_header("content-type", "application/problem+json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_5xx_is_retried_a_bounded_number_of_times_then_dropped(failing_peer: tuple[str, list[str]]) -> None:
    url, seen = failing_peer
    with Monitor("fraud", url=url, token="t", batch_rows=20, max_attempts=3, retry_delay=0.01) as monitor:
        monitor.log_rows(frame(20, seed=8).to_pylist())
        assert monitor.flush()
        assert (monitor.dropped_rows, monitor.sent_rows, monitor.rejected_rows) == (20, 0, 0)
    assert len(seen) == 3 and all("alias=production" in path for path in seen)
    assert isinstance(monitor.last_error, ServerError)


def test_rows_are_dropped_with_a_counter_while_the_registry_is_stopped(
    database_url: str, api_tokens: Tokens, tmp_path: Path
) -> None:
    server = start_server(database_url, tmp_path)
    try:
        with httpx.Client(base_url=server.url, headers=bearer(api_tokens.admin), timeout=30) as api:
            model = monitored_model(api)
        monitor = Monitor(
            model, url=server.url, token=api_tokens.writer, batch_rows=100, max_attempts=2, retry_delay=0.01
        )
        monitor.log_rows(frame(200, seed=9).to_pylist())
        assert monitor.flush() and monitor.sent_rows == 200
    finally:
        stop_server(server)
    monitor.log_rows(frame(150, seed=10).to_pylist())  # the registry is down; logging goes on
    assert monitor.flush()  # each batch tried twice, then dropped
    assert (monitor.sent_rows, monitor.dropped_rows, monitor.rejected_rows) == (200, 150, 0)
    assert isinstance(monitor.last_error, ServerError)
    monitor.close()
