"""Stream an upload into a temp file while hashing it, never holding it whole in memory.

Writes are batched (``FLUSH_BYTES``) and done off the event loop; the file is fsynced before it is handed
to a blob store, so a blob row can only ever point at durable bytes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio

from registry.errors import InvalidInput, PayloadTooLarge

FLUSH_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Spooled:
    path: Path
    sha256: str
    size: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def _write_all(handle: BinaryIO, parts: list[bytes]) -> None:
    handle.writelines(parts)


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
    size = 0
    pending: list[bytes] = []
    pending_bytes = 0
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"upload exceeds the limit of {max_bytes} bytes")
            digest.update(chunk)
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= FLUSH_BYTES:
                await anyio.to_thread.run_sync(_write_all, handle, pending)
                pending, pending_bytes = [], 0
        if pending:
            await anyio.to_thread.run_sync(_write_all, handle, pending)
        await anyio.to_thread.run_sync(_finish, handle)
    except BaseException:
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
