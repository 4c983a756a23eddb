"""Direct transfers: blob bytes between this machine and the registry's S3 bucket over presigned URLs.

The registry offers them when its blob store is S3 (``POST /api/v1/uploads``, ``GET /blobs/{sha}/url``);
otherwise it answers 409 ``direct_unavailable`` and the caller streams through the registry as before.
Parts of a multipart upload go up in parallel, each retried a few times; the registry verifies the
whole blob's sha256 when the upload is completed, so a corrupted or wrong upload never becomes a blob.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from registry import errors
from registry.client._http import HttpClient, ServerError

MIN_BYTES = 8 * 1024 * 1024
"""Smaller blobs stream through the registry: one request costs less than the three a direct upload takes."""
PARALLEL = 4
ATTEMPTS = 3
CHUNK = 1024 * 1024
UNAVAILABLE = "direct_unavailable"


def _bucket_client() -> httpx.Client:
    # No registry token on these requests: the URL's signature is the credential.
    return httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), headers={"user-agent": "modelkeep-client"})


def upload(
    api: HttpClient, local: Path, sha256: str, size: int, progress: Callable[[int], None] | None
) -> dict[str, Any] | None:
    """Upload ``local`` directly; the blob's record (``FileOut``), or None when the registry offers no direct
    transfers (the caller streams instead)."""
    try:
        plan = api.json("POST", "/api/v1/uploads", json={"sha256": sha256, "size": size})
    except errors.Conflict as exc:
        if exc.code == UNAVAILABLE:
            return None
        raise
    if plan["exists"]:
        if progress:
            progress(size)
        return {"path": "", "sha256": sha256, "size": plan["size"]}
    upload_id = plan["upload_id"]
    lock = threading.Lock()

    def counted(n: int) -> None:
        if progress:
            with lock:
                progress(n)

    try:
        with _bucket_client() as bucket:
            pool = ThreadPoolExecutor(max_workers=PARALLEL)
            try:
                futures = [
                    pool.submit(
                        _put_part,
                        bucket,
                        local,
                        p,
                        (p["number"] - 1) * int(plan["part_size"]),
                        plan["headers"],
                        counted,
                    )
                    for p in plan["parts"]
                ]
                etags = [f.result() for f in futures]
            finally:
                # On a failure (or Ctrl-C) the parts not started yet are not sent.
                pool.shutdown(wait=True, cancel_futures=True)
    except BaseException:
        try:
            api.request("DELETE", f"/api/v1/uploads/{upload_id}")
        except errors.RegistryError:
            pass  # the bucket's lifecycle rule for incomplete uploads, or gc, reclaims it
        raise
    parts = [{"number": p["number"], "etag": etag} for p, etag in zip(plan["parts"], etags, strict=True)]
    body = {"sha256": sha256, "size": size, "parts": parts if plan["mode"] == "multipart" else []}
    # Completing may read the whole object back (multipart): no read deadline for that answer.
    return dict(
        api.json("POST", f"/api/v1/uploads/{upload_id}/complete", json=body, timeout=httpx.Timeout(60.0, read=None))
    )


def _put_part(
    bucket: httpx.Client,
    local: Path,
    part: dict[str, Any],
    offset: int,
    headers: dict[str, str],
    progress: Callable[[int], None],
) -> str:
    length = int(part["size"])
    for attempt in range(1, ATTEMPTS + 1):
        sent = 0

        def body() -> Iterator[bytes]:
            nonlocal sent
            with open(local, "rb") as handle:
                handle.seek(offset)
                left = length
                while left > 0:
                    chunk = handle.read(min(CHUNK, left))
                    if not chunk:
                        raise errors.InvalidInput(f"{local} shrank while it was being uploaded")
                    left -= len(chunk)
                    sent += len(chunk)
                    progress(len(chunk))
                    yield chunk

        try:
            response = bucket.put(part["url"], content=body(), headers={**headers, "content-length": str(length)})
        except httpx.TransportError as exc:
            failure = f"{exc.__class__.__name__}: {exc}"
        else:
            if response.is_success:
                return str(response.headers.get("etag", ""))
            failure = f"HTTP {response.status_code}: {response.text[:300]}"
            if response.status_code < 500:
                raise errors.InvalidInput(f"the bucket refused part {part['number']}: {failure}", code="part_refused")
        progress(-sent)  # sent again on the next attempt
        if attempt < ATTEMPTS:
            time.sleep(0.5 * attempt)
    raise ServerError(f"part {part['number']} failed {ATTEMPTS} times: {failure}", code="unreachable")


def download_url(api: HttpClient, sha256: str) -> str | None:
    """A presigned URL for the blob, or None when the registry offers none."""
    try:
        return str(api.json("GET", f"/api/v1/blobs/{sha256}/url")["url"])
    except errors.Conflict as exc:
        if exc.code == UNAVAILABLE:
            return None
        raise


def stream_url(url: str) -> Iterator[httpx.Response]:
    """A streaming GET of a presigned URL (errors raised as the client's own)."""
    try:
        with _bucket_client() as bucket, bucket.stream("GET", url) as response:
            if not response.is_success:
                response.read()
                raise ServerError(
                    f"the bucket answered {response.status_code} to a presigned download: {response.text[:300]}",
                    code="unreachable",
                )
            yield response
    except httpx.TransportError as exc:
        raise ServerError(
            f"download from the bucket failed: {exc.__class__.__name__}: {exc}", code="unreachable"
        ) from None
