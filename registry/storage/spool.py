"""Stream an upload into a temp file while hashing it, never holding it whole in memory.

Receiving runs on the event loop. Hashing and writing run side by side in two ordered lanes, a thread each
for the upload: a batch (``FLUSH_BYTES``) is handed to both lanes as soon as it is full, up to ``DEPTH`` batches
ahead of the slower lane, so the receiving, the hashing and the writing of different batches overlap and
at most ``DEPTH + 1`` batches are in memory. The file is written around the page cache where the
filesystem allows it (``O_DIRECT``), else buffered with write-back started after every batch; either way
it is fsynced before it is handed to a blob store, so a blob row can only ever point at durable bytes.

A part file is locked (``flock``) from its creation until it has been handed to a store or discarded, so
:func:`sweep`, run when a server starts, removes the part files of killed processes and never one that a
live process (another worker, another replica on the same folder) is still writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import hashlib
import mmap
import os
import tempfile
import threading
from collections import deque
from collections.abc import AsyncIterable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from registry import _libc
from registry.errors import InvalidInput, PayloadTooLarge

FLUSH_BYTES = 4 * 1024 * 1024
DEPTH = 2  # batches handed to the workers and not yet done; one more is being received
SYNC_FILE_RANGE_WRITE = 2


def _load_write_back() -> Callable[[int, int, int], Any] | None:
    call = _libc.function("sync_file_range")
    if call is None:
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int
    return lambda fd, offset, length: call(fd, offset, length, SYNC_FILE_RANGE_WRITE)


_start_write_back = _load_write_back()


PART_PREFIX, PART_SUFFIX = "upload-", ".part"


@dataclass(frozen=True, slots=True)
class Spooled:
    path: Path
    sha256: str
    size: int
    lock: _PartLock

    def discard(self) -> None:
        """Remove the file if a store did not consume it, then release its lock (in that order, so a sweep
        never sees it unlocked). Call once the store has taken it, as well as on failure."""
        self.path.unlink(missing_ok=True)
        self.lock.release()


class _PartLock:
    """The lock that marks a part file as live: an exclusive ``flock`` held by a descriptor of its own."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _lock(fd: int) -> bool:
    """Take the exclusive lock of a part file without waiting; False if another descriptor holds it."""
    if os.name != "posix":  # no flock: parts are never swept there (see sweep)
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _still_named(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a sweep may have unlinked it)."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _create_part(tmp_dir: Path) -> tuple[int, Path, _PartLock]:
    """A new, locked part file. A sweep in another process may remove a new file in the instant before its
    lock is taken; the writer sees that (the name is gone) and starts over with a new file."""
    while True:
        fd, name = tempfile.mkstemp(prefix=PART_PREFIX, suffix=PART_SUFFIX, dir=tmp_dir)
        path = Path(name)
        try:
            if _lock(fd) and _still_named(fd, path):
                # The lock lives on a duplicate: the writer closes ``fd`` once the bytes are durable, and the
                # file must stay marked live until a store has taken it.
                return fd, path, _PartLock(os.dup(fd))
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)  # swept before it was locked (or being swept): the sweep removes what is left


def sweep(tmp_dir: Path) -> int:
    """Remove the part files nobody holds (left by killed processes); returns how many were removed.

    Safe while other processes upload into the same folder: a live part file is locked, and a file is
    removed only while this holds its lock.
    """
    if os.name != "posix":
        return 0
    removed = 0
    try:
        candidates = list(tmp_dir.glob(f"{PART_PREFIX}*{PART_SUFFIX}"))
    except FileNotFoundError:
        return 0
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile (consumed or swept), or not a plain file of ours
            continue
        try:
            if _lock(fd) and _still_named(fd, path):
                path.unlink()
                removed += 1
        finally:
            os.close(fd)
    return removed


async def _wait_for_threads(futures: list[Future[None]]) -> bool:
    """Wait until no job of ``futures`` runs any more, even through cancellation (a thread may still hold
    the file); retrieve their errors (the one being raised matters). True if the wait was cancelled."""
    cancelled = False
    with anyio.CancelScope(shield=True):  # an anyio scope cancels at every await; asyncio's cancel() once
        while running := [future for future in futures if not future.done()]:
            try:
                await asyncio.wait([asyncio.wrap_future(future) for future in running])
            except asyncio.CancelledError:
                cancelled = True
    for future in futures:
        if not future.cancelled():
            future.exception()
    return cancelled


def _hash_batch(digest: Any, parts: list[bytes]) -> None:
    for part in parts:
        digest.update(part)  # releases the GIL for large buffers


class _Sink:
    """The temp file's writer, called from one worker thread at a time.

    Where the filesystem allows it the file is written with ``O_DIRECT`` from a page-aligned buffer: the
    bytes go from that buffer to the disk, with no copy into the page cache and no write-back work later
    (a third of the CPU that buffered writing plus ``fsync`` costs, measured on ext4), and a large upload
    does not push other files out of the cache. Writes are whole blocks; the last partial block is padded
    and the file truncated to its length. Where ``O_DIRECT`` is refused at ``fcntl`` (or on systems without
    it) the parts are written as they are, buffered, with write-back started after every batch; where it is
    refused at the first write, the same blocks go through the page cache.
    """

    BLOCK = 4096  # alignment for offset, length and address: a multiple of every common logical block size

    def __init__(self, fd: int, *, direct: bool = True, capacity: int = FLUSH_BYTES) -> None:
        self.fd = fd
        self.direct = direct and _enable_direct(fd)
        self.capacity = capacity
        self.offset = 0  # where the file ends (direct: where the buffer starts)
        self.held = 0  # direct: bytes at the start of the buffer not yet written, fewer than a block after a batch
        self.buffer: mmap.mmap | None = None
        if self.direct:
            self.buffer = mmap.mmap(-1, capacity)  # anonymous mappings are page-aligned

    def write(self, parts: list[bytes]) -> None:
        if self.buffer is None:
            self._write_buffered(parts)
            return
        view = memoryview(self.buffer)
        for part in parts:
            source = memoryview(part)
            while source:
                take = min(self.capacity - self.held, len(source))
                view[self.held : self.held + take] = source[:take]
                self.held += take
                source = source[take:]
                if self.held == self.capacity:
                    self._write_blocks()
        self._write_blocks()

    def finish(self) -> None:
        """Write what is left, make the file durable and close it."""
        if self.buffer is not None and self.held:
            length = self.offset + self.held
            whole = -(-self.held // self.BLOCK) * self.BLOCK
            self.buffer[self.held : whole] = bytes(whole - self.held)
            self.held = whole
            self._write_blocks()
            os.ftruncate(self.fd, length)
        os.fsync(self.fd)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.buffer is not None:
            buffer, self.buffer = self.buffer, None
            with contextlib.suppress(BufferError):  # a traceback still holds a view of it: the GC frees it
                buffer.close()

    def _write_blocks(self) -> None:
        assert self.buffer is not None
        whole = self.held - self.held % self.BLOCK
        if not whole:
            return
        view = memoryview(self.buffer)
        try:
            _write_all(self.fd, view[:whole], self.offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL or not self.direct or self.offset:
                raise
            # Accepted at fcntl, refused at the first write: go on through the page cache, same blocks.
            _disable_direct(self.fd)
            self.direct = False
            _write_all(self.fd, view[:whole], self.offset)
        if not self.direct and _start_write_back is not None:
            _start_write_back(self.fd, self.offset, whole)
        self.offset += whole
        self.held -= whole
        view[: self.held] = view[whole : whole + self.held]  # less than a block moves to the front

    def _write_buffered(self, parts: list[bytes]) -> None:
        start = self.offset
        for part in parts:
            _write_all(self.fd, memoryview(part), self.offset)
            self.offset += len(part)
        if _start_write_back is not None and self.offset > start:
            # Best effort: an error here (e.g. a filesystem without support) only loses the head start.
            _start_write_back(self.fd, start, self.offset - start)


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        done = os.pwrite(fd, data, offset)
        data, offset = data[done:], offset + done


def _enable_direct(fd: int) -> bool:
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    import fcntl  # POSIX only, like O_DIRECT itself

    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | flag)
    except OSError:
        return False
    return True


def _disable_direct(fd: int) -> None:
    import fcntl

    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)


async def spool(
    chunks: AsyncIterable[bytes],
    *,
    tmp_dir: Path,
    max_bytes: int,
    expected_sha256: str | None = None,
    direct: bool = True,
) -> Spooled:
    """Write ``chunks`` to a temp file in ``tmp_dir``. Removes the file on any failure.

    ``direct=False`` writes through the page cache even where ``O_DIRECT`` would be accepted.

    Raises PayloadTooLarge past ``max_bytes`` and InvalidInput when ``expected_sha256`` does not match.
    """
    tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner-only, like the files in it
    fd, path, lock = _create_part(tmp_dir)
    digest = hashlib.sha256()
    # One thread per lane and upload, so each lane runs its batches one at a time and in order; the threads
    # start with the first batch, so an upload that fits in one batch starts them once, at its end.
    hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-hash")
    writing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-write")
    batches: deque[tuple[Future[None], ...]] = deque()
    failed = threading.Event()  # set when a job fails or the upload is abandoned: later jobs do nothing
    sink: _Sink | None = None
    size = 0
    pending: list[bytes] = []
    pending_bytes = 0

    def job(call: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            if failed.is_set():
                return
            try:
                call()
            except BaseException:
                failed.set()
                raise

        return run

    async def settle(keep: int) -> None:
        while len(batches) > keep:
            for future in batches[0]:
                await asyncio.wrap_future(future)
            batches.popleft()

    async def submit() -> None:
        nonlocal pending, pending_bytes
        assert sink is not None
        await settle(keep=DEPTH - 1)
        # Hashing and writing read the same batch in two threads at once: SHA-256 is the slowest step and
        # gets a core of its own while the write runs beside it.
        parts = pending
        batches.append(
            (
                hashing.submit(job(functools.partial(_hash_batch, digest, parts))),
                writing.submit(job(functools.partial(sink.write, parts))),
            )
        )
        pending, pending_bytes = [], 0

    try:
        sink = _Sink(fd, direct=direct)
        async for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"upload exceeds the limit of {max_bytes} bytes")
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= FLUSH_BYTES:
                await submit()
        if pending:
            await submit()
        batches.append((writing.submit(job(sink.finish)),))  # after the last write; waited for like a batch
        await settle(keep=0)
    except BaseException:
        failed.set()
        cancelled = await _wait_for_threads([future for batch in batches for future in batch])
        if sink is not None:
            sink.close()
        else:
            os.close(fd)
        path.unlink(missing_ok=True)
        lock.release()
        if cancelled:
            raise asyncio.CancelledError from None
        raise
    finally:
        hashing.shutdown(wait=False, cancel_futures=True)
        writing.shutdown(wait=False, cancel_futures=True)
    sha = digest.hexdigest()
    if expected_sha256 is not None and sha != expected_sha256:
        path.unlink(missing_ok=True)
        lock.release()
        raise InvalidInput(
            f"content sha256 is {sha}, not {expected_sha256}: the upload was corrupted or mislabelled",
            field="sha256",
        )
    return Spooled(path=path, sha256=sha, size=size, lock=lock)
