"""Stream an upload into a temp file while hashing it, never holding it whole in memory.

Receiving runs on the event loop; hashing and writing run in a worker thread, one batch (``FLUSH_BYTES``)
at a time, overlapped with receiving the next batch, so at most two batches are in memory. After each batch
the kernel is asked to start writing it back (``sync_file_range`` on Linux), so the closing ``fsync`` finds
little left to do. The file is fsynced before it is handed to a blob store, so a blob row can only ever
point at durable bytes.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from registry import _libc
from registry.errors import InvalidInput, PayloadTooLarge

FLUSH_BYTES = 4 * 1024 * 1024
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


def _write_batch(handle: BinaryIO, digest: Any, parts: list[bytes], offset: int, length: int) -> None:
    for part in parts:
        digest.update(part)
    handle.writelines(parts)
    handle.flush()
    if _start_write_back is not None:
        # Best effort: an error here (e.g. a filesystem without support) only loses the head start.
        _start_write_back(handle.fileno(), offset, length)


def _finish(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


async def spool(
    chunks: AsyncIterable[bytes],
    *,
    tmp_dir: Path,
    max_bytes: int,
    expected_sha256: str | None = None,
) -> Spooled:
    """Write ``chunks`` to a temp file in ``tmp_dir``. Removes the file on any failure.

    Raises PayloadTooLarge past ``max_bytes`` and InvalidInput when ``expected_sha256`` does not match.
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=tmp_dir)
    path = Path(name)
    handle = os.fdopen(fd, "wb")
    digest = hashlib.sha256()
    loop = asyncio.get_running_loop()
    in_flight: asyncio.Future[None] | None = None
    size = written = 0
    pending: list[bytes] = []
    pending_bytes = 0

    async def submit() -> None:
        nonlocal in_flight, pending, pending_bytes, written
        if in_flight is not None:
            # One batch at a time, in order: the digest and the file see the bytes as they arrived.
            await in_flight
        in_flight = loop.run_in_executor(None, _write_batch, handle, digest, pending, written, pending_bytes)
        written += pending_bytes
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
        if in_flight is not None:
            await in_flight
        await loop.run_in_executor(None, _finish, handle)
    except BaseException:
        if in_flight is not None:
            if not in_flight.done():
                # The worker still holds the file: let it finish (even when cancelled) before closing it.
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([in_flight])
            if not in_flight.cancelled():
                in_flight.exception()  # retrieved: the error being raised is the one that matters
        handle.close()
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
