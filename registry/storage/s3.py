"""Blob store on any S3-compatible service (AWS S3, SeaweedFS, MinIO): ``s3://bucket/prefix/<ab>/<cd>/<sha256>``.

boto3 is synchronous, so every call runs in a worker thread; one client serves the whole store (boto3
clients are thread-safe, and sharing one keeps a single connection pool).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import anyio
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from registry.settings import Settings
from registry.storage import CHUNK_SIZE, blob_key
from registry.storage.direct import DirectTransfers

# HEAD answers a bare 404 (no body to carry a code); GET answers NoSuchKey.
_MISSING = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound"})


@dataclass(frozen=True, slots=True)
class DirectSettings:
    public_endpoint_url: str | None = None
    part_bytes: int = 64 * 1024 * 1024
    single_put_max: int = 5 * 1024**3
    expires_seconds: int = 3600


def _is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


class S3BlobStore:
    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        multipart_threshold: int = 64 * 1024 * 1024,
        direct: DirectSettings | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 blob store needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        config = Config(
            # Path-style (http://host/bucket/key): SeaweedFS and MinIO on a bare host:port have no
            # per-bucket DNS names.
            s3={"addressing_style": "path"},
            # botocore >= 1.36 adds CRC trailers (aws-chunked bodies) to every PUT by default; not every
            # S3-compatible server speaks them. The blob was already verified against its sha256 by the
            # spool, so only send checksums where the API demands one.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "max_attempts": 5},
            # Room for concurrent requests plus a multipart upload's part threads without pool churn.
            max_pool_connections=32,
        )
        # Credentials left as None fall through to boto3's default chain (env, profile, instance role).
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )
        self._transfer = TransferConfig(multipart_threshold=multipart_threshold)
        self.direct: DirectTransfers | None = None
        """Presigned transfers, when offered (``MODELKEEP_S3_DIRECT_TRANSFERS``)."""
        if direct is not None:
            # URLs are signed for the endpoint clients reach, which may not be the one this process uses
            # (a compose network name, a cluster-internal service).
            presigner = boto3.session.Session().client(
                "s3",
                endpoint_url=direct.public_endpoint_url or endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                # SigV4 (boto3 may presign with the retired V2 for custom endpoints), so that the
                # x-amz-checksum-sha256 header is signed into the URL and cannot be left out or changed.
                config=config.merge(Config(signature_version="s3v4")),
            )
            self.direct = DirectTransfers(
                client=self._client,
                presigner=presigner,
                bucket=self.bucket,
                prefix=self.prefix,
                key_of=self.key_of,
                part_bytes=direct.part_bytes,
                single_put_max=direct.single_put_max,
                expires_seconds=direct.expires_seconds,
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        """Build from ``blob_store_url = s3://bucket/prefix`` and the ``s3_*`` settings."""
        url = urlparse(settings.resolved_blob_store_url)
        if url.scheme != "s3":
            raise ValueError(f"not an S3 blob store URL: {settings.resolved_blob_store_url!r}")
        return cls(
            bucket=url.netloc,
            prefix=url.path,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            multipart_threshold=settings.s3_multipart_threshold,
            direct=DirectSettings(
                public_endpoint_url=settings.s3_public_endpoint_url,
                part_bytes=settings.s3_part_bytes,
                single_put_max=settings.s3_single_put_max_bytes,
                expires_seconds=settings.s3_presign_seconds,
            )
            if settings.s3_direct_transfers
            else None,
        )

    def key_of(self, digest: str) -> str:
        key = blob_key(digest)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    def _put(self, digest: str, source: Path) -> None:
        key = self.key_of(digest)
        # Content addressing: an object under this digest already holds these exact bytes, so skip the
        # upload. Two concurrent puts of one digest may both upload; the last complete wins, same bytes.
        if not self._exists(key):
            # Below the threshold this is one PutObject, above it a multipart upload. Both are atomic: the
            # object appears only when the PUT / CompleteMultipartUpload succeeds, never partially. On error
            # the transfer manager aborts its multipart upload (a killed process can still leave
            # invisible parts behind: a bucket lifecycle rule for incomplete uploads reclaims them).
            self._client.upload_file(str(source), self.bucket, key, Config=self._transfer)
        source.unlink(missing_ok=True)

    async def put(self, digest: str, source: Path) -> None:
        """Upload the verified file ``source`` under ``digest`` (unless already stored), then delete it.

        Raises FileNotFoundError if ``source`` is gone, and botocore errors for S3 failures (the source is
        then kept for the caller to discard).
        """
        await anyio.to_thread.run_sync(self._put, digest, source)

    async def exists(self, digest: str) -> bool:
        return await anyio.to_thread.run_sync(self._exists, self.key_of(digest))

    def _open(self, digest: str) -> Any:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.key_of(digest))
        except ClientError as exc:
            if _is_missing(exc):
                raise FileNotFoundError(f"blob {digest} is not in s3://{self.bucket}/{self.prefix}") from exc
            raise
        return response["Body"]

    async def stream(self, digest: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        # The body is read chunk by chunk off the socket, so memory stays at one chunk whatever the size.
        body = await anyio.to_thread.run_sync(self._open, digest)
        try:
            while chunk := await anyio.to_thread.run_sync(body.read, chunk_size):
                yield bytes(chunk)
        finally:
            # A consumer that stops early (client went away) must not leave the connection half-read in
            # the pool: close() drops it instead.
            body.close()

    async def delete(self, digest: str) -> None:
        # DeleteObject on a missing key succeeds, matching the local store's missing_ok.
        await anyio.to_thread.run_sync(lambda: self._client.delete_object(Bucket=self.bucket, Key=self.key_of(digest)))

    async def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; True when this call created it. Replicas starting together
        may all try: the ones that lose the race find it created (by them, so no error)."""
        return bool(await anyio.to_thread.run_sync(self._ensure_bucket))

    def _ensure_bucket(self) -> bool:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return False
        except ClientError as exc:
            if not _is_missing(exc):
                raise
        region = self._client.meta.region_name
        extra = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        try:
            self._client.create_bucket(Bucket=self.bucket, **extra)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return False
            raise
        return True

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._client.close)
