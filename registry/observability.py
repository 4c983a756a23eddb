"""Request ids, JSON logs and Prometheus metrics, for every process of a replica.

Metrics are ``prometheus_client`` objects. ``registry serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a folder
of its own before any worker starts (see :func:`prepare_multiprocess`), so each worker writes its samples to
memory-mapped files there and ``/metrics``, answered by whichever worker takes the request, sums them all.
An app built without ``registry serve`` (tests, a hand-run uvicorn with one worker) keeps them in memory.

The request id is a context variable: set by the API middleware for each request (from a well-formed
``X-Request-ID`` the client or the load balancer sent, else a new one), echoed in the response, written
into every log line of the request, stored with each event the request records and sent again with the
webhook deliveries of those events.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

request_id: ContextVar[str | None] = ContextVar("modelkeep_request_id", default=None)
"""The id of the API request this code runs for, if any."""


def accept_request_id(sent: str | None) -> str:
    """The id to use for a request: the client's when it is 1-64 characters of ``[A-Za-z0-9._:-]``
    (so it is safe in headers, logs and the database), else a new random one."""
    if sent and _REQUEST_ID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex


def prepare_multiprocess(data_dir: Path) -> Path:
    """Before the first metric exists: give this process and the workers it starts one folder for their
    metric files (``PROMETHEUS_MULTIPROC_DIR`` if already set, else ``<data_dir>/metrics``), emptied of
    files a previous run left, as ``prometheus_client`` requires."""
    folder = Path(os.environ.get(MULTIPROC_ENV) or data_dir / "metrics")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


# -- logs ------------------------------------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or None) to every record that has none, for formatters to use."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:  # else given with ``extra=`` (the access log)
            record.request_id = request_id.get()
        return True


_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``request_id``
    when the line was written for a request, ``exception`` with the traceback, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            line["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_handler(fmt: str) -> logging.Handler:
    """A stderr handler writing ``fmt`` (``text`` or ``json``) lines, with request ids."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else _TextFormatter(TEXT_FORMAT))
    return handler


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{text} [request {rid}]" if rid else text


# -- metrics ---------------------------------------------------------------------------------------------------
# Created on first use, so that importing this module never fixes where samples are kept before
# ``prepare_multiprocess`` has run.


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.pool_in_use = Gauge(
            "modelkeep_db_pool_connections_in_use",
            "Database connections checked out of the pool, summed over live processes.",
            ["pool"],
            multiprocess_mode="livesum",
        )
        self.pool_capacity = Gauge(
            "modelkeep_db_pool_connections_max",
            "Connections the pools may open (size + overflow), summed over live processes.",
            ["pool"],
            multiprocess_mode="livesum",
        )
        self.upload_bytes = Counter("modelkeep_upload_bytes", "Bytes received into the blob store.", ["kind"])
        self.delivery_attempts = Counter(
            "modelkeep_webhook_attempts", "Webhook delivery attempts by outcome.", ["outcome"]
        )
        self.delivery_seconds = Histogram(
            "modelkeep_webhook_attempt_seconds",
            "Duration of one webhook delivery attempt.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.delivery_lag = Histogram(
            "modelkeep_webhook_delivery_lag_seconds",
            "From the event's commit to its successful delivery, retries included.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
        )
        self.slot_runs = Counter(
            "modelkeep_scheduler_slot_runs", "Scheduled job slots this replica ran, by outcome.", ["job", "outcome"]
        )
        self.monitor_checks = Counter(
            "modelkeep_monitor_checks", "Drift checks run, by status (ok, drift, insufficient_data ...).", ["status"]
        )
        self.monitor_batches = Counter("modelkeep_monitor_batches", "Production batches ingested.")


_metrics: _Metrics | None = None


def metrics() -> _Metrics:
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    return _metrics


def watch_pool(engine: Any, pool: str, capacity: int) -> None:
    """Count ``engine``'s checked-out connections in ``modelkeep_db_pool_connections_in_use{pool=...}``."""
    from sqlalchemy import event

    m = metrics()
    in_use = m.pool_in_use.labels(pool)
    m.pool_capacity.labels(pool).inc(capacity)
    sync_engine = getattr(engine, "sync_engine", engine)
    event.listen(sync_engine, "checkout", lambda *_: in_use.inc())
    event.listen(sync_engine, "checkin", lambda *_: in_use.dec())


def mark_process_dead() -> None:
    """At a worker's exit: its live gauges stop counting (counters and histograms keep their totals)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def gauges(values: dict[str, tuple[str, float]]) -> list[Any]:
    """Metric families for values read now (``name: (help, value)``), for :func:`exposition`."""
    from prometheus_client.core import GaugeMetricFamily

    return [GaugeMetricFamily(name, doc, value=value) for name, (doc, value) in values.items()]


def exposition(extra: Iterator[Any] | None = None) -> tuple[bytes, str]:
    """The text format of every process's samples plus ``extra`` metric families, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client import multiprocess as mp
    from prometheus_client.registry import Collector

    families = list(extra or ())

    class Fresh(Collector):
        def collect(self) -> Iterator[Any]:
            yield from families

    if multiprocess():
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(Fresh())
        return generate_latest(registry), CONTENT_TYPE_LATEST
    local = CollectorRegistry()
    local.register(Fresh())
    return generate_latest(REGISTRY) + generate_latest(local), CONTENT_TYPE_LATEST
