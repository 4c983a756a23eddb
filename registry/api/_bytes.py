"""Streaming bytes in and out over HTTP, shared by the native and the MLflow faces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.utils import encode_rfc2231, quote
from typing import Any

from litestar import Request
from litestar.exceptions import InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.response import Stream

from registry.errors import InvalidInput, NotFound, PayloadTooLarge
from registry.services import artifacts
from registry.settings import Settings
from registry.storage import BlobStore


async def body_chunks(request: Request[Any, Any, Any]) -> AsyncIterator[bytes]:
    """The request body as chunks; a client that hangs up mid-upload becomes a clean 400, not a 500."""
    try:
        async for chunk in request.stream():
            yield chunk
    except RequestEntityTooLarge:
        raise PayloadTooLarge("upload is larger than the configured limit (MODELKEEP_MAX_UPLOAD_BYTES)") from None
    except InternalServerException as exc:
        raise InvalidInput(f"upload interrupted: {exc.detail}", code="upload_interrupted") from None


async def ingest(
    request: Request[Any, Any, Any], store: BlobStore, settings: Settings, expected: str | None = None
) -> tuple[str, int]:
    """Stream the request body into the blob store; returns ``(sha256, size)``."""
    return await artifacts.ingest(
        body_chunks(request),
        store=store,
        tmp_dir=settings.tmp_dir,
        max_bytes=settings.max_upload_bytes,
        expected_sha256=expected,
    )


def content_disposition(filename: str) -> str:
    """``attachment`` with the name twice, as RFC 6266 advises: ``filename*`` carries it exactly (RFC 5987:
    UTF-8, percent-encoded, so quotes and ``;`` cannot end the parameter), and ``filename`` an ASCII
    fallback for clients that predate it (quotes and backslashes escaped, anything else outside printable
    ASCII replaced by ``_``)."""
    fallback = "".join(c if " " <= c < "\x7f" else "_" for c in filename)
    return f'attachment; filename="{quote(fallback)}"; filename*={encode_rfc2231(filename, "UTF-8")}'


async def blob_response(
    store: BlobStore, sha256: str, size: int, *, filename: str | None = None, media_type: str | None = None
) -> Stream:
    if not await store.exists(sha256):
        raise NotFound(f"blob {sha256} is recorded but missing from the blob store")
    headers = {"content-length": str(size), "x-content-sha256": sha256, "etag": f'"{sha256}"'}
    if filename:
        headers["content-disposition"] = content_disposition(filename)
    return Stream(store.stream(sha256), media_type=media_type or "application/octet-stream", headers=headers)
