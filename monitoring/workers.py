"""The profiling workers: the processes an app runs the CPU side of ingest and baselines in.

Reading a batch or a reference (pyarrow), conforming it, cutting it into hourly buckets and profiling it
(numpy, and DataSketches' KLL updates, which hold the GIL for the whole call) takes about a core-second per
million rows. Run in the API process, every request waited behind it for the GIL: read p99 rose +628% to
+1,025% while batches arrived at full speed (docs/benchmarks.md). So an app owns a :class:`ProfilePool` of
worker processes. The server spools a body to a file, hands the worker its path and a few small parameters,
and gets bytes back (serialised profiles, sample Parquet, the rows kept for labels); what touches the
database stays in the server.

Whatever runs here is a module-level function of picklable arguments. Its expected failures (InvalidInput
naming the column or row) are raised in the worker and re-raised in the server as the same type with the
same message, code and fields, since :class:`registry.errors.RegistryError` pickles with its attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

import anyio

from registry import _libc

log = logging.getLogger("monitoring.workers")
P = ParamSpec("P")
T = TypeVar("T")

MAX_TASKS_PER_CHILD = 1000
"""A worker is replaced by a fresh one after this many tasks (a batch is one or two), so whatever its heap kept
that releasing memory after each task (:func:`_call_in_worker`) could not return goes back to the system within
a bounded number of tasks. Not every few tasks: a new worker imports numpy, pyarrow and the profile code (about
half a CPU-second, taken from the cores the API shares) and, while the old one exits, both hold memory."""
WORKER_NICENESS = 10
"""Workers run at a lower CPU priority than the API process: profiling is throughput work, reads are
latency-sensitive, and on a machine with few cores the two compete for the same cores."""

_ACTIVE: ContextVar[ProfilePool | None] = ContextVar("modelkeep_profile_pool", default=None)


class ProfilePool:
    """Runs profiling functions in up to ``workers`` processes (0: in this process, in a thread).

    At most ``workers`` tasks run at once (one with 0); the others wait here, outside the pool, so a burst of
    batches queues instead of taking every core (and, in-process, the GIL) from the requests. The processes
    are spawned (fresh interpreters: never forked from the server, which has threads and an event loop), are
    started by the first task, and are replaced after MAX_TASKS_PER_CHILD tasks. A worker that dies (killed,
    out of memory) breaks the executor; the next task makes a new one and the task that met the broken one
    runs again once, since every task reads its input from a file and returns bytes, so it is safe to repeat.
    """

    def __init__(self, workers: int, *, max_tasks_per_child: int = MAX_TASKS_PER_CHILD) -> None:
        if workers < 0:
            raise ValueError("workers must be 0 (in-process) or more")
        self.workers = workers
        self.max_tasks_per_child = max_tasks_per_child
        self._executor: ProcessPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._started = False

    def start(self) -> None:
        """Make the executor (its processes start with the first task). Until this is called, and after
        :meth:`close`, tasks run in-process."""
        self._started = True
        if self.workers and self._executor is None:
            self._executor = self._new_executor()

    async def close(self) -> None:
        """Let running tasks finish, drop queued ones and stop the processes."""
        self._started = False
        executor, self._executor = self._executor, None
        if executor is not None:
            await anyio.to_thread.run_sync(functools.partial(executor.shutdown, wait=True, cancel_futures=True))

    @contextlib.contextmanager
    def bound(self) -> Iterator[None]:
        """Make this the pool :func:`run` uses in the current context (an app binds it for each request)."""
        token = _ACTIVE.set(self)
        try:
            yield
        finally:
            _ACTIVE.reset(token)

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in a worker (in a thread without workers); its exceptions come back as they
        were raised. Waits for a free slot first."""
        if self._slots is None:  # made here, on the event loop that uses it
            self._slots = asyncio.Semaphore(max(self.workers, 1))
        async with self._slots:
            if self._executor is None:
                return await anyio.to_thread.run_sync(functools.partial(_call, fn, *args, **kwargs))
            return await self._in_worker(functools.partial(_call_in_worker, fn, *args, **kwargs))

    async def _in_worker(self, call: Callable[[], T]) -> T:
        for attempt in (1, 2):
            executor = self._executor
            if executor is None:  # closed meanwhile (the app is stopping): finish here
                return await anyio.to_thread.run_sync(call)
            try:
                future = executor.submit(call)
                # Shielded: the worker runs the task to its end whatever becomes of the request, so the slot stays
                # taken until then and a cancelled request never lets more work in than the pool allows.
                with anyio.CancelScope(shield=True):
                    return await asyncio.wrap_future(future)
            except BrokenProcessPool:
                if attempt == 2:
                    raise
                log.warning("a profiling worker died; starting a new pool and running its task again")
                self._replace(executor)
        raise AssertionError("unreachable")

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        # Several tasks may meet the same broken executor: only the first replaces it.
        if self._executor is broken and self._started:
            self._executor = self._new_executor()
        broken.shutdown(wait=False, cancel_futures=True)

    def _new_executor(self) -> ProcessPoolExecutor:
        # Spawn, never fork: a fork of the server copies locks held by its other threads, which do not exist in
        # the child. Not a fork server either: it would be one more process holding numpy and pyarrow (110 MB)
        # for workers that start rarely (MAX_TASKS_PER_CHILD).
        context = multiprocessing.get_context("spawn")
        # Python 3.11's executor can stall when a worker retires (max_tasks_per_child) while tasks are queued
        # behind it (CPython gh-115634); the slots in run() keep at most `workers` tasks in it, so none queue.
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_init_worker,
            max_tasks_per_child=self.max_tasks_per_child,
        )


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` on the pool bound to the current context (:meth:`ProfilePool.bound`), else in a
    thread of this process (the CLI on a database, services called directly)."""
    pool = _ACTIVE.get()
    if pool is None:
        return await anyio.to_thread.run_sync(functools.partial(_call, fn, *args, **kwargs))
    return await pool.run(fn, *args, **kwargs)


def _call(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        _release_memory()


def _call_in_worker(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return _call(fn, *args, **kwargs)
    finally:
        # glibc's free pages too (numpy's arrays). Only here: the API process keeps its heap on purpose
        # (registry.api.app.tune_allocator), so that uploads do not page-fault their buffers back in.
        trim = _malloc_trim()
        if trim is not None:
            trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    found: Callable[[int], int] | None = _libc.function("malloc_trim")  # looked up once: find_library runs ldconfig
    return found


def _release_memory() -> None:
    """Give the pages pyarrow's allocator keeps after a task back to the system: after a 1M-row reference it
    held ~230 MB of freed memory that a process would otherwise keep for good."""
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()


def _init_worker() -> None:
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    # One thread for pyarrow's reading and kernels: with more, a worker would take every core from the API
    # process for a moment; batches are small and a burst is spread over the pool's processes instead.
    import pyarrow

    pyarrow.set_cpu_count(1)
    pyarrow.set_io_thread_count(1)
