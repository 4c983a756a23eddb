"""Direct transfers on S3: clients move blob bytes to and from the bucket over presigned URLs, and the
registry only signs, verifies and records.

An upload goes to a staging key (``<prefix>/uploads/<random>``), never to the blob's own key: the bytes are
untrusted until checked, and a blob key must only ever hold the bytes of its digest (``put`` skips uploads
of digests already stored). The plan the server hands out depends on the size:

* up to ``single_put_max`` bytes, **one presigned PUT** that carries the blob's SHA-256 as
  ``x-amz-checksum-sha256``, signed into the URL. The store checks the bytes against it and keeps it; the
  registry reads the stored checksum back (HeadObject) and compares it with the declared digest, so it
  reads none of the bytes. A store that keeps no SHA-256 checksum gets the read-back check below instead.
* above it, a **multipart upload** with presigned part URLs (the part size chosen here, ``part_bytes`` or
  more, at most 10,000 parts), uploaded in parallel by the client. S3's multipart checksums are
  per part, never of the whole object, so the registry reads the staged object back and hashes it.

A staged object that checks out is copied to the blob's key inside the store (CopyObject; no bytes pass
through the registry) and the staging key is deleted; one that does not is deleted, and the client gets
a 400. The upload id handed to the client names only the staging key and S3's multipart id, so any replica
can complete it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from registry.errors import Conflict, InvalidInput, NotFound

MAX_PARTS = 10_000
MIN_PART = 5 * 1024 * 1024  # S3's smallest part (but the last)
MAX_PART = 5 * 1024**3  # and largest; also the largest single PUT
STAGING = "uploads"
_STAGE_ID = re.compile(r"[0-9a-f]{32}")
_READ_CHUNK = 8 * 1024 * 1024


_GONE = ("404", "NoSuchKey", "NotFound")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code"))


class DigestMismatch(InvalidInput):
    code = "digest_mismatch"


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    url: str
    size: int


@dataclass(frozen=True, slots=True)
class UploadPlan:
    upload_id: str
    mode: str
    """``single`` (one PUT, checked by the store's SHA-256) or ``multipart`` (parts, read back to check)."""
    part_size: int
    parts: list[Part]
    headers: dict[str, str]
    """Headers every PUT must send exactly as given (they are signed into the URLs)."""
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Verified:
    size: int
    read_back: bool
    """True when the registry hashed the staged bytes itself (no usable store checksum)."""


def part_size_for(size: int, minimum: int) -> int:
    """The smallest whole number of MiB at or above ``minimum`` that splits ``size`` into at most
    10,000 parts."""
    mib = 1024 * 1024
    wanted = max(minimum, MIN_PART, math.ceil(size / MAX_PARTS))
    return min(MAX_PART, math.ceil(wanted / mib) * mib)


def _encode(stage: str, multipart_id: str | None) -> str:
    raw = json.dumps({"s": stage, "m": multipart_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_upload_id(upload_id: str) -> tuple[str, str | None]:
    """``(staging id, multipart id or None)``; InvalidInput for anything this server did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(upload_id + "=" * (-len(upload_id) % 4))
        found = json.loads(raw)
        stage, multipart_id = found["s"], found["m"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise InvalidInput("unknown upload id", code="unknown_upload", field="upload_id") from None
    if not isinstance(stage, str) or not _STAGE_ID.fullmatch(stage):
        raise InvalidInput("unknown upload id", code="unknown_upload", field="upload_id")
    if multipart_id is not None and (not isinstance(multipart_id, str) or not 0 < len(multipart_id) <= 1024):
        raise InvalidInput("unknown upload id", code="unknown_upload", field="upload_id")
    return stage, multipart_id


def checksum_of(sha256_hex: str) -> str:
    """The ``x-amz-checksum-sha256`` form (base64 of the raw digest) of a hex SHA-256."""
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


class DirectTransfers:
    """Presigned uploads and downloads for one :class:`~registry.storage.s3.S3BlobStore`."""

    def __init__(
        self,
        *,
        client: Any,
        presigner: Any,
        bucket: str,
        prefix: str,
        key_of: Any,
        part_bytes: int,
        single_put_max: int,
        expires_seconds: int,
    ) -> None:
        self._client = client
        self._presigner = presigner  # signs for the endpoint clients reach (may differ from ours)
        self.bucket = bucket
        self.prefix = prefix
        self._key_of = key_of
        self.part_bytes = part_bytes
        self.single_put_max = min(single_put_max, MAX_PART)
        self.expires = expires_seconds
        self._copy = TransferConfig(multipart_threshold=MAX_PART, multipart_chunksize=512 * 1024 * 1024)

    def _stage_key(self, stage: str) -> str:
        return f"{self.prefix}/{STAGING}/{stage}" if self.prefix else f"{STAGING}/{stage}"

    def _sign(self, operation: str, **params: Any) -> str:
        return str(
            self._presigner.generate_presigned_url(
                operation, Params={"Bucket": self.bucket, **params}, ExpiresIn=self.expires
            )
        )

    # -- uploads ---------------------------------------------------------------------------------------------
    async def plan(self, *, sha256: str, size: int) -> UploadPlan:
        return await anyio.to_thread.run_sync(self._plan, sha256, size)

    def _plan(self, sha256: str, size: int) -> UploadPlan:
        stage = secrets.token_hex(16)
        key = self._stage_key(stage)
        expires_at = datetime.now(UTC) + timedelta(seconds=self.expires)
        if size <= self.single_put_max:
            checksum = checksum_of(sha256)
            url = self._sign("put_object", Key=key, ChecksumSHA256=checksum)
            return UploadPlan(
                upload_id=_encode(stage, None),
                mode="single",
                part_size=size,
                parts=[Part(1, url, size)],
                headers={"x-amz-checksum-sha256": checksum},
                expires_at=expires_at,
            )
        part_size = part_size_for(size, self.part_bytes)
        multipart_id = str(self._client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"])
        count = math.ceil(size / part_size)
        parts = [
            Part(
                number,
                self._sign("upload_part", Key=key, UploadId=multipart_id, PartNumber=number),
                min(part_size, size - (number - 1) * part_size),
            )
            for number in range(1, count + 1)
        ]
        return UploadPlan(
            upload_id=_encode(stage, multipart_id),
            mode="multipart",
            part_size=part_size,
            parts=parts,
            headers={},
            expires_at=expires_at,
        )

    async def complete(self, *, upload_id: str, sha256: str, size: int, etags: dict[int, str] | None) -> Verified:
        """Assemble (multipart), verify the staged object against ``sha256`` and ``size``, and move it to the
        blob's key. Raises DigestMismatch / InvalidInput (the staged bytes deleted), NotFound for an upload
        that is not there (never sent, expired or already completed)."""
        stage, multipart_id = decode_upload_id(upload_id)
        return await anyio.to_thread.run_sync(self._complete, stage, multipart_id, sha256, size, etags)

    def _complete(
        self, stage: str, multipart_id: str | None, sha256: str, size: int, etags: dict[int, str] | None
    ) -> Verified:
        key = self._stage_key(stage)
        if multipart_id is not None:
            if not etags:
                raise InvalidInput("a multipart upload is completed with its parts' ETags", field="parts")
            try:
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=multipart_id,
                    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]},
                )
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code"))
                if code == "NoSuchUpload":
                    raise NotFound(
                        "no such upload: it expired, was aborted or was completed", code="unknown_upload"
                    ) from None
                if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "InvalidArgument", "MalformedXML"):
                    raise InvalidInput(
                        f"the parts do not assemble: {code}", code="invalid_parts", field="parts"
                    ) from None
                raise
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _code(exc) in _GONE:
                raise NotFound("nothing was uploaded for this upload id", code="unknown_upload") from None
            raise
        # The bytes verified are the bytes copied: a presigned PUT stays usable until it expires, so the staged
        # object could be replaced between the check and the copy. Both are pinned to the ETag seen here.
        etag = str(head.get("ETag", ""))
        try:
            stored = int(head["ContentLength"])
            if stored != size:
                raise InvalidInput(f"{stored} bytes arrived, {size} were declared", code="size_mismatch", field="size")
            checksum = head.get("ChecksumSHA256")
            read_back = not (isinstance(checksum, str) and "-" not in checksum and multipart_id is None)
            if read_back:
                actual = self._hash(key, etag)
            else:
                actual = base64.b64decode(str(checksum)).hex()
            if actual != sha256:
                raise DigestMismatch(f"the uploaded bytes have sha256 {actual}, not {sha256}; nothing was stored")
            self._client.copy(
                {"Bucket": self.bucket, "Key": key},
                self.bucket,
                self._key_of(sha256),
                ExtraArgs={"CopySourceIfMatch": etag} if etag else None,
                Config=self._copy,
            )
        except InvalidInput:
            self._delete_quietly(key)  # refused: the staged bytes go
            raise
        except ClientError as exc:
            # Kept for a retry (the sweep removes them if none comes): a transient store error must not cost the
            # client its upload.
            if _code(exc) in ("412", "PreconditionFailed"):
                raise Conflict(
                    "the uploaded object changed while it was being verified: upload again", code="upload_changed"
                ) from None
            if _code(exc) in _GONE:
                raise NotFound("no such upload: it was completed or aborted meanwhile", code="unknown_upload") from None
            raise
        self._delete_quietly(key)
        return Verified(size=stored, read_back=read_back)

    def _delete_quietly(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError:
            pass  # the storage collection's sweep removes it later

    def _hash(self, key: str, etag: str) -> str:
        digest = hashlib.sha256()
        pinned = {"IfMatch": etag} if etag else {}
        body = self._client.get_object(Bucket=self.bucket, Key=key, **pinned)["Body"]
        try:
            while chunk := body.read(_READ_CHUNK):
                digest.update(chunk)
        finally:
            body.close()
        return digest.hexdigest()

    async def abort(self, upload_id: str) -> None:
        stage, multipart_id = decode_upload_id(upload_id)

        def run() -> None:
            key = self._stage_key(stage)
            if multipart_id is not None:
                try:
                    self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=multipart_id)
                except ClientError as exc:
                    if str(exc.response.get("Error", {}).get("Code")) != "NoSuchUpload":
                        raise
            self._client.delete_object(Bucket=self.bucket, Key=key)

        await anyio.to_thread.run_sync(run)

    async def sweep(self) -> int:
        """Abort multipart uploads and delete staged objects that were started more than an hour past the
        URLs' expiry ago (their client gave up or died); returns how many. Run by the storage collection."""
        return await anyio.to_thread.run_sync(self._sweep)

    def _sweep(self) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.expires + 3600)
        staging = self._stage_key("")
        removed = 0
        for page in self._client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=staging):
            for found in page.get("Uploads", []):
                if found["Initiated"] < cutoff:
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=found["Key"], UploadId=found["UploadId"]
                    )
                    removed += 1
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=staging):
            for found in page.get("Contents", []):
                if found["LastModified"] < cutoff:
                    self._client.delete_object(Bucket=self.bucket, Key=found["Key"])
                    removed += 1
        return removed

    # -- downloads -------------------------------------------------------------------------------------------
    def download_url(self, sha256: str, *, filename: str | None = None) -> tuple[str, datetime]:
        """A presigned GET of the blob (no network call: signing is local)."""
        params: dict[str, Any] = {"Key": self._key_of(sha256)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self._sign("get_object", **params), datetime.now(UTC) + timedelta(seconds=self.expires)
