"""Experiment tracking for training code: ``with start_run(...) as run:`` then log params, metrics, tags,
artifacts and the datasets used. The run also records, without being asked, the code it ran (git commit,
branch, remote, uncommitted diff), its environment (Python, platform, packages) and system metrics
(CPU, memory, NVIDIA GPUs). Capture can fail; training never does because of it (a warning is logged).

Metric points are buffered and sent in batches: when ``batch_size`` points are waiting, every
``flush_interval`` seconds from a background thread, and when the run ends. A batch the server cannot
take right now (unreachable, 5xx) is kept and sent again; none is dropped silently.
"""

from __future__ import annotations

import atexit
import getpass
import hashlib
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from registry import errors
from registry.client import capture, sysmetrics
from registry.client._http import ServerError
from registry.client.api import RegistryClient

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_BATCH = 1000
DEFAULT_FLUSH_INTERVAL = 2.0
MAX_POINTS_PER_REQUEST = 5000
"""The server takes 10,000 items per batch; half leaves room and keeps a request well under a megabyte."""
MAX_BUFFERED = 100_000
"""Beyond this many waiting points, ``log_metric`` sends them itself: the server sets the pace."""
MAX_ERROR_TAG = 1000
DISABLE_SYSTEM_METRICS_ENV = "MODELKEEP_DISABLE_SYSTEM_METRICS"
GPU_TAG = "modelkeep.system.gpu"
# The server's rule for param, metric and tag keys (registry.services.names.key), checked here too so a
# bad key fails at the call that logged it rather than a batch later in a background thread.
_KEY = re.compile(r"^[\w./\- :]{1,250}$")

Point = tuple[str, float, int, int]
"""key, value, step, timestamp (epoch ms)."""


def now_ms() -> int:
    return int(time.time() * 1000)


def check_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not _KEY.match(key) or ".." in key.split("/"):
        raise errors.InvalidInput(
            f"invalid {what} {key!r}: use 1-250 letters, digits, '_', '-', '.', ' ', ':' or '/'", field=what
        )
    return key


class MetricBuffer:
    """Points waiting to be sent, and the daemon thread that sends them.

    Invariant: a point leaves the buffer only once the server has accepted it, or refused it for good
    (a 4xx: sending it again cannot succeed). Such a refusal is kept in ``failure`` for the run's end.
    """

    def __init__(
        self, send: Callable[[list[Point]], None], *, batch_size: int, interval: float, max_buffered: int
    ) -> None:
        self._send = send
        self._batch_size = batch_size
        self._interval = interval
        self._max_buffered = max_buffered
        self._points: list[Point] = []
        self._lock = threading.Lock()
        # One batch in flight at a time, so a batch put back after a failure keeps its place in line.
        self._sending = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._outage = False
        self.failure: errors.RegistryError | None = None
        self.requests = 0
        self._thread = threading.Thread(target=self._loop, name="modelkeep-metrics-flush", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, points: list[Point]) -> None:
        with self._lock:
            self._points.extend(points)
            waiting = len(self._points)
        # Past the cap the caller sends (backpressure), unless the server is known to be away: then a
        # training step must not wait on a connection timeout, and the points simply wait in memory.
        if waiting >= self._max_buffered and not self._outage:
            try:
                self._send_all()
            except ServerError as exc:  # the server is down: keep everything and keep training
                self._note_outage(exc)
        elif waiting >= self._batch_size:
            self._wake.set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._points)

    def _take(self) -> list[Point]:
        with self._lock:
            batch = self._points[:MAX_POINTS_PER_REQUEST]
            del self._points[:MAX_POINTS_PER_REQUEST]
        return batch

    def _send_all(self) -> None:
        """Send everything waiting. Raises ServerError (the batch is put back) when the server is away."""
        with self._sending:
            while batch := self._take():
                try:
                    self._send(batch)
                    self.requests += 1
                except ServerError:
                    with self._lock:
                        self._points[:0] = batch
                    raise
                except errors.RegistryError as exc:
                    if self.failure is None:
                        log.error("modelkeep: the registry refused %d metric points: %s", len(batch), exc)
                    self.failure = self.failure or exc
        if self._outage:
            self._outage = False
            log.warning("modelkeep: the registry is reachable again; buffered metrics were sent")

    def _note_outage(self, exc: ServerError) -> None:
        if not self._outage:
            self._outage = True
            log.warning("modelkeep: cannot send metrics (%s); keeping %d points and retrying", exc, len(self))

    def _loop(self) -> None:
        delay = self._interval
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                self._send_all()
                delay = self._interval
            except ServerError as exc:
                self._note_outage(exc)
                delay = min(delay * 2, 30.0)  # back off while the server is away
            except Exception:
                log.exception("modelkeep: sending metrics failed")

    def flush(self, *, attempts: int = 1) -> None:
        """Send everything now, trying ``attempts`` times (1 s, 2 s ... apart). Raises ServerError if the
        server stayed away (the points stay buffered)."""
        for attempt in range(attempts):
            try:
                self._send_all()
                return
            except ServerError:
                if attempt == attempts - 1:
                    raise
                time.sleep(2**attempt)

    def stop(self) -> None:
        """Stop the thread and send what is left (3 tries). Raises ServerError if that failed."""
        self._stopped.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self.flush(attempts=3)


def _default_code_dir() -> Path:
    """The folder of the script being run (``python train.py`` or ``-m pkg.train``), else the current
    directory (notebooks, the REPL): where the user's repository most likely is."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    if isinstance(script, str) and os.path.isfile(script):
        return Path(script).resolve().parent
    return Path.cwd()


def _system_interval(system_metrics: bool | float) -> float | None:
    if os.environ.get(DISABLE_SYSTEM_METRICS_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    if system_metrics is False:
        return None
    if system_metrics is True:
        return sysmetrics.DEFAULT_INTERVAL
    if system_metrics <= 0:
        raise ValueError("system_metrics takes True, False or a positive number of seconds")
    return float(system_metrics)


class ActiveRun:
    """A run being tracked. End it with ``with`` (or ``end()``): FINISHED, FAILED on an exception,
    KILLED on Ctrl-C. Every method may be called from any thread."""

    def __init__(
        self,
        client: RegistryClient,
        info: dict[str, Any],
        *,
        owns_client: bool,
        batch_size: int,
        flush_interval: float,
        system_interval: float | None = None,
        gpus: sysmetrics.GpuReader | None = None,
    ) -> None:
        self.client = client
        self.info = info
        self.id: str = info["id"]
        self._owns_client = owns_client
        # The SDK client is shared with the flusher thread; one request at a time keeps it simple and safe.
        self._http = threading.Lock()
        self._steps: dict[str, int] = {}
        self._steps_lock = threading.Lock()
        self._warned_nonfinite: set[str] = set()
        self._ended = False
        self._end_lock = threading.Lock()
        self._sampler: sysmetrics.Sampler | None = None
        self._buffer = MetricBuffer(
            lambda batch: self._call(self.client.log_batch, self.id, metrics=[_point_json(p) for p in batch]),
            batch_size=batch_size,
            interval=flush_interval,
            max_buffered=max(MAX_BUFFERED, batch_size),
        )
        self._buffer.start()
        if system_interval is not None:
            self._sampler = sysmetrics.Sampler(self._buffer_sample, interval=system_interval, gpus=gpus)
            self._sampler.start()
        atexit.register(self._at_exit)

    @property
    def metric_requests(self) -> int:
        """How many metric batches were sent so far."""
        return self._buffer.requests

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._http:
            return fn(*args, **kwargs)

    def _check_open(self) -> None:
        if self._ended:
            raise errors.Conflict(f"run {self.id} has ended; start a new run to log more")

    def _buffer_sample(self, values: dict[str, float], step: int, timestamp: int) -> None:
        self._buffer.add([(key, value, step, timestamp) for key, value in values.items()])

    # -- logging ----------------------------------------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Sent at once. Raises Conflict if a key already holds a different value (params are immutable)."""
        self._check_open()
        for key in params:
            check_key(key, "param key")
        self._call(self.client.log_batch, self.id, params=dict(params))

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Sent at once; a tag set again takes the new value."""
        self._check_open()
        for key in tags:
            check_key(key, "tag key")
        self._call(self.client.log_batch, self.id, tags={k: str(v) for k, v in tags.items()})

    def log_metric(self, key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
        """Buffer one point. ``step`` defaults to the key's previous step + 1 (from 0); ``timestamp`` (epoch
        ms) to now. Raises InvalidInput for a bad key. A NaN or infinite value cannot be stored: it is
        skipped with a warning (once per key) rather than stopping a diverging training run."""
        self.log_metrics({key: value}, step=step, timestamp=timestamp)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None) -> None:
        self._check_open()
        ts = now_ms() if timestamp is None else int(timestamp)
        points: list[Point] = []
        for key, raw in metrics.items():
            check_key(key, "metric key")
            value = float(raw)
            with self._steps_lock:
                at = self._steps.get(key, 0) if step is None else int(step)
                self._steps[key] = at + 1
            if not math.isfinite(value):
                if key not in self._warned_nonfinite:
                    self._warned_nonfinite.add(key)
                    log.warning("modelkeep: metric %r is %s at step %d; non-finite values are skipped", key, value, at)
                continue
            points.append((key, value, at, ts))
        self._buffer.add(points)

    def flush(self) -> None:
        """Send the buffered metric points now. Raises ServerError if the registry cannot be reached."""
        self._buffer.flush()

    # -- files and lineage -----------------------------------------------------------------------------
    def log_artifact(self, local: str | os.PathLike[str], path: str | None = None) -> dict[str, Any]:
        """Upload one file into the run's artifact tree at ``path`` (default: the file's name)."""
        self._check_open()
        source = Path(local)
        if not source.is_file():
            raise errors.InvalidInput(f"{source} is not a file")
        return self._call(self.client.upload_artifact, self.id, path or source.name, source)

    def log_artifacts(self, local_dir: str | os.PathLike[str], path: str | None = None) -> list[dict[str, Any]]:
        """Upload every file under ``local_dir`` (symlinks skipped) to ``path/<relative path>``."""
        self._check_open()
        root = Path(local_dir)
        if not root.is_dir():
            raise errors.InvalidInput(f"{root} is not a folder")
        prefix = path.strip("/") + "/" if path and path.strip("/") else ""
        uploaded = []
        for dirpath, _dirs, files in os.walk(root):
            for filename in sorted(files):
                file = Path(dirpath) / filename
                if file.is_symlink() or not file.is_file():
                    continue
                target = prefix + file.relative_to(root).as_posix()
                uploaded.append(self._call(self.client.upload_artifact, self.id, target, file))
        return uploaded

    def use_dataset(self, name: str, version: int, context: str | None = None) -> None:
        """Lineage: this run consumed version ``version`` of the artifact (dataset) ``name``."""
        self._check_open()
        self._call(self.client.record_input, self.id, name, version, context)

    # -- ending -----------------------------------------------------------------------------------------
    def end(self, status: str = "FINISHED", *, error: str | None = None) -> None:
        """Stop the threads, send the last metrics, set the status. Idempotent.

        Raises the first problem met (registry unreachable, metric points refused) after doing all it can.
        """
        with self._end_lock:
            if self._ended:
                return
            self._ended = True
        atexit.unregister(self._at_exit)
        problems: list[Exception] = []
        try:
            if self._sampler is not None:
                self._sampler.stop()
            try:
                self._buffer.stop()
            except Exception as exc:
                log.error("modelkeep: %d metric points of run %s were not sent: %s", len(self._buffer), self.id, exc)
                problems.append(exc)
            if self._buffer.failure is not None:
                problems.append(self._buffer.failure)
            # The status goes last, and even after a failed flush: a run must not stay RUNNING forever.
            if error:
                try:
                    self._call(self.client.log_batch, self.id, tags={"modelkeep.error": error[:MAX_ERROR_TAG]})
                except Exception as exc:
                    problems.append(exc)
            try:
                self._call(self.client.update_run, self.id, status=status, end_time=now_ms())
            except Exception as exc:
                problems.append(exc)
        finally:
            if self._owns_client:
                self.client.close()
        if problems:
            raise problems[0]

    def _at_exit(self) -> None:
        # The interpreter is exiting with the run still open (no `with`, no end()): keep its data.
        try:
            self.end("FINISHED")
        except Exception as exc:
            log.error("modelkeep: ending run %s at exit failed: %s", self.id, exc)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.end("FINISHED")
            return
        if isinstance(exc, KeyboardInterrupt):
            status = "KILLED"
        elif isinstance(exc, SystemExit) and exc.code in (0, None):
            status = "FINISHED"
        else:
            status = "FAILED"
        try:
            self.end(status, error=None if status == "FINISHED" else f"{type(exc).__name__}: {exc}")
        except Exception as end_exc:  # never hide the user's exception behind ours
            log.warning("modelkeep: ending run %s as %s failed: %s", self.id, status, end_exc)


def _point_json(point: Point) -> dict[str, Any]:
    key, value, step, timestamp = point
    return {"key": key, "value": value, "step": step, "timestamp": timestamp}


def _git_payload(client: RegistryClient, state: capture.GitState, tags: dict[str, str]) -> dict[str, Any]:
    """The run's ``git`` object; uploads the diff blob first (content-addressed: skipped if present)."""
    payload: dict[str, Any] = {
        "commit": state.commit,
        "branch": state.branch[:256] if state.branch else None,
        "remote": state.remote,
        "dirty": state.dirty,
        "untracked": state.untracked,
    }
    if state.diff_truncated:
        tags["modelkeep.git.diff_truncated"] = (
            f"the uncommitted diff is over {capture.MAX_DIFF_BYTES} bytes; kept the first "
            f"{len(state.diff)} bytes (whole files only)"
        )
    if state.untracked_truncated:
        tags["modelkeep.git.untracked_truncated"] = f"only the first {len(state.untracked)} untracked files listed"
    for problem in state.problems:
        log.warning("modelkeep: %s", problem)
    if state.diff:
        digest = hashlib.sha256(state.diff).hexdigest()
        try:
            if not client.blob_exists(digest):
                with tempfile.TemporaryDirectory(prefix="modelkeep-") as tmp:
                    spool = Path(tmp) / "diff.patch"
                    spool.write_bytes(state.diff)
                    client.upload_blob(spool, digest)
            payload["diff_sha256"] = digest
        except Exception as exc:
            log.warning("modelkeep: uploading the uncommitted diff failed (%s); the run records no diff", exc)
    return payload


def _capture(
    client: RegistryClient, *, code_dir: Path, capture_git: bool, capture_env: bool, tags: dict[str, str]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    git: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    if capture_git:
        try:
            state = capture.git_state(code_dir)
            git = _git_payload(client, state, tags) if state else None
        except Exception as exc:
            log.warning("modelkeep: git capture failed (%s: %s); the run records no git state", type(exc).__name__, exc)
    if capture_env:
        try:
            environment = capture.environment()
        except Exception as exc:
            log.warning("modelkeep: environment capture failed (%s: %s)", type(exc).__name__, exc)
    return git, environment


def _open_gpus(reader: sysmetrics.GpuReader | None) -> tuple[sysmetrics.GpuReader | None, str]:
    if reader is None:
        return sysmetrics.open_gpus()
    try:
        return reader, reader.describe()
    except Exception as exc:
        return None, f"unavailable: {type(exc).__name__}: {exc}"


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return None


def start_run(
    experiment: str | None = None,
    *,
    name: str | None = None,
    experiment_id: int | None = None,
    tags: Mapping[str, Any] | None = None,
    user: str | None = None,
    url: str | None = None,
    token: str | None = None,
    client: RegistryClient | None = None,
    capture_git: bool = True,
    capture_env: bool = True,
    system_metrics: bool | float = True,
    gpu_reader: sysmetrics.GpuReader | None = None,
    code_dir: str | os.PathLike[str] | None = None,
    batch_size: int = DEFAULT_BATCH,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
) -> ActiveRun:
    """Create a run in ``experiment`` (created if missing; by id with ``experiment_id``; else the default
    experiment) and start tracking it. Use it as a context manager.

    ``url``/``token`` default to MODELKEEP_URL / MODELKEEP_TOKEN (or pass a ``client``). ``system_metrics``
    is True (every 10 s), False, or the interval in seconds; MODELKEEP_DISABLE_SYSTEM_METRICS=1 turns it
    off. ``gpu_reader`` replaces the NVML reader. ``code_dir`` is where git state is read (default: the
    running script's folder, else the current directory).

    Raises what the registry raises when the run cannot be created (unreachable, unauthenticated ...);
    a failed capture only logs a warning.
    """
    if batch_size < 1 or batch_size > MAX_POINTS_PER_REQUEST:
        raise ValueError(f"batch_size must be 1-{MAX_POINTS_PER_REQUEST}")
    interval = _system_interval(system_metrics)
    started = now_ms()  # before the capture, which can take a moment on a large repository
    owns_client = client is None
    client = client or RegistryClient(url, token)
    gpus: sysmetrics.GpuReader | None = None
    try:
        run_tags = {check_key(k, "tag key"): str(v) for k, v in (tags or {}).items()}
        git, environment = _capture(
            client,
            code_dir=Path(code_dir) if code_dir is not None else _default_code_dir(),
            capture_git=capture_git,
            capture_env=capture_env,
            tags=run_tags,
        )
        if interval is not None:
            gpus, run_tags[GPU_TAG] = _open_gpus(gpu_reader)
        fields: dict[str, Any] = {
            "experiment": experiment,
            "experiment_id": experiment_id,
            "name": name,
            "user": user or _os_user(),
            "start_time": started,
            "tags": run_tags,
        }
        try:
            info = client.create_run(**fields, git=git, environment=environment)
        except (errors.InvalidInput, errors.PayloadTooLarge) as exc:
            if git is None and environment is None:
                raise
            # Something captured was refused (an odd branch name, a huge environment): the run matters more.
            log.warning(
                "modelkeep: the registry refused the run with its captured git/environment (%s); trying without them",
                exc,
            )
            info = client.create_run(**fields)
        return ActiveRun(
            client,
            info,
            owns_client=owns_client,
            batch_size=batch_size,
            flush_interval=flush_interval,
            system_interval=interval,
            gpus=gpus,
        )
    except BaseException:
        if gpus is not None:
            gpus.close()
        if owns_client:
            client.close()
        raise
