"""Stream an upload into a temp file while hashing it, never holding it whole in memory.

Receiving runs on the event loop. Hashing and writing run in worker threads, side by side, in two ordered
lanes: a batch (``FLUSH_BYTES``) is handed to both lanes as soon as it is full, up to ``DEPTH`` batches
ahead of the slower lane, so the receiving, the hashing and the writing of different batches overlap and
at most ``DEPTH + 1`` batches are in memory. The file is written around the page cache where the
filesystem allows it (``O_DIRECT``), else buffered with write-back started after every batch; either way
it is fsynced before it is handed to a blob store, so a blob row can only ever point at durable bytes.
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
from collections import deque
from collections.abc import AsyncIterable, Callable
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


@dataclass(frozen=True, slots=True)
class Spooled:
    path: Path
    sha256: str
    size: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class _Lane:
    """Runs calls on the loop's default executor one at a time, in the order they were submitted, without
    making the submitter wait. A call runs only if every call before it succeeded and ``stopped`` is unset."""

    def __init__(self) -> None:
        self.tail: asyncio.Task[None] | None = None
        self.stopped = False

    def submit(self, call: Callable[[], None]) -> asyncio.Task[None]:
        self.tail = asyncio.ensure_future(self._run(self.tail, call))
        return self.tail

    async def _run(self, previous: asyncio.Task[None] | None, call: Callable[[], None]) -> None:
        if previous is not None:
            await asyncio.shield(previous)  # re-raises its error: nothing runs after a failed call
        if not self.stopped:
            await asyncio.get_running_loop().run_in_executor(None, call)


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
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=tmp_dir)
    path = Path(name)
    sink = _Sink(fd, direct=direct)
    digest = hashlib.sha256()
    hashing, writing = _Lane(), _Lane()
    batches: deque[tuple[asyncio.Task[None], ...]] = deque()
    size = 0
    pending: list[bytes] = []
    pending_bytes = 0

    async def settle(keep: int) -> None:
        while len(batches) > keep:
            for job in batches[0]:
                # Shielded: a cancelled request must not see a batch as done while a thread still uses it.
                await asyncio.shield(job)
            batches.popleft()

    async def submit() -> None:
        nonlocal pending, pending_bytes
        await settle(keep=DEPTH - 1)
        # Hashing and writing read the same batch in two threads at once: SHA-256 is the slowest step and
        # gets a core of its own while the write runs beside it. Each lane keeps its batches in order.
        batches.append(
            (
                hashing.submit(functools.partial(_hash_batch, digest, pending)),
                writing.submit(functools.partial(sink.write, pending)),
            )
        )
        pending, pending_bytes = [], 0

    try:
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
        batches.append((writing.submit(sink.finish),))  # after the last write; waited for like a batch
        await settle(keep=0)
    except BaseException:
        hashing.stopped = writing.stopped = True  # batches not started yet are dropped
        jobs = [job for batch in batches for job in batch]
        running = [job for job in jobs if not job.done()]
        if running:
            # The workers still hold the file: let them finish (even when cancelled) before closing it.
            with anyio.CancelScope(shield=True):
                await asyncio.wait(running)
        for job in jobs:
            if not job.cancelled():
                job.exception()  # retrieved: the error being raised is the one that matters
        sink.close()
        path.unlink(missing_ok=True)
        raise
    sha = digest.hexdigest()
    if expected_sha256 is not None and sha != expected_sha256:
        path.unlink(missing_ok=True)
        raise InvalidInput(
            f"content sha256 is {sha}, not {expected_sha256}: the upload was corrupted or mislabelled",
            field="sha256",
        )
    return Spooled(path=path, sha256=sha, size=size)
