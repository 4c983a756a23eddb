"""Blob store on a local folder: ``<root>/<ab>/<cd>/<sha256>``, written by atomic rename.

Folders it creates are owner-only (0700), like the blob files (made 0600 by the spool); a root that exists
keeps the mode its owner gave it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import anyio

from registry.storage import CHUNK_SIZE, blob_key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)

    @classmethod
    def from_url(cls, url: str) -> LocalBlobStore:
        return cls(Path(unquote(urlparse(url).path)))

    def path_of(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def _put(self, digest: str, source: Path) -> None:
        target = self.path_of(digest)
        if target.exists():
            # Same digest, same bytes: keep the stored copy (identical files are stored once).
            source.unlink(missing_ok=True)
            return
        # Level by level: mkdir(parents=True) would give the missing parent the umask's mode, not ours.
        target.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        # rename() is atomic within one filesystem, and the source was fsynced by the spool; syncing the
        # folder makes the new name itself durable.
        try:
            os.replace(source, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Spool folder on another filesystem: copy next to the target under a name of its own (two
            # puts of one digest must not share it), fsync, then rename into place.
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            staging = Path(name)
            try:
                with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                    shutil.copyfileobj(src, out, 4 * 1024 * 1024)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(staging, target)
            finally:
                staging.unlink(missing_ok=True)
            source.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    async def put(self, digest: str, source: Path) -> None:
        await anyio.to_thread.run_sync(self._put, digest, source)

    async def exists(self, digest: str) -> bool:
        return await anyio.to_thread.run_sync(self.path_of(digest).exists)

    async def stream(self, digest: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        handle = await anyio.open_file(self.path_of(digest), "rb")
        try:
            while chunk := await handle.read(chunk_size):
                yield chunk
        finally:
            await handle.aclose()

    async def delete(self, digest: str) -> None:
        self.path_of(digest).unlink(missing_ok=True)

    async def close(self) -> None:
        return None
