"""Content-addressed blob stores behind one small protocol, and the streaming spool that feeds them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from registry.settings import Settings

CHUNK_SIZE = 1024 * 1024


@runtime_checkable
class BlobStore(Protocol):
    """Bytes addressed by their sha256. Implementations must make ``put`` atomic: a reader sees the whole
    blob or nothing, and a crash never leaves a partial object under a digest."""

    async def put(self, digest: str, source: Path) -> None:
        """Store the (already verified) file ``source`` under ``digest``, consuming it (moved or deleted)."""

    async def exists(self, digest: str) -> bool: ...

    def stream(self, digest: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Yield the blob's bytes. Raises FileNotFoundError (before the first chunk) if absent."""
        ...

    async def delete(self, digest: str) -> None: ...

    async def close(self) -> None: ...


def open_store(settings: Settings) -> BlobStore:
    """Build the blob store named by ``settings.resolved_blob_store_url`` (``file://`` or ``s3://``)."""
    url = settings.resolved_blob_store_url
    if url.startswith("file://"):
        from registry.storage.local import LocalBlobStore

        return LocalBlobStore.from_url(url)
    if url.startswith("s3://"):
        from registry.storage.s3 import S3BlobStore

        return S3BlobStore.from_settings(settings)
    raise ValueError(f"unsupported blob store URL {url!r}: use file:///path or s3://bucket/prefix")


def blob_key(digest: str) -> str:
    """Fan out by the first two byte pairs so no folder holds millions of entries."""
    return f"{digest[:2]}/{digest[2:4]}/{digest}"
