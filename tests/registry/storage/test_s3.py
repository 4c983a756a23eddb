"""The S3 blob store against a real SeaweedFS: round trips, dedupe, multipart, missing blobs, and the whole
registry API running on it (on SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from registry.db import Database
from registry.settings import Settings
from registry.storage import BlobStore, blob_key, open_store
from registry.storage.s3 import S3BlobStore
from tests.conftest import Tokens, unique
from tests.fixtures.seaweed import S3Server

MiB = 1024 * 1024


def make_store(server: S3Server, prefix: str, **overrides: Any) -> S3BlobStore:
    options: dict[str, Any] = {
        "endpoint_url": server.endpoint_url,
        "region": server.region,
        "access_key_id": server.access_key,
        "secret_access_key": server.secret_key,
    }
    return S3BlobStore(bucket=server.bucket, prefix=prefix, **{**options, **overrides})


def keys_under(server: S3Server, prefix: str) -> list[str]:
    """What is really in the bucket (the ready-probe and other tests live under other prefixes)."""
    listing = server.client().list_objects_v2(Bucket=server.bucket, Prefix=f"{prefix}/")
    return sorted(item["Key"] for item in listing.get("Contents", []))


def write_blob(folder: Path, data: bytes) -> tuple[str, Path]:
    path = folder / f"spooled-{unique()}.part"
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), path


async def read_all(store: BlobStore, digest: str, *, chunk_size: int = MiB) -> list[bytes]:
    return [chunk async for chunk in store.stream(digest, chunk_size=chunk_size)]


@pytest.fixture
async def store(s3_server: S3Server) -> AsyncIterator[S3BlobStore]:
    blobs = make_store(s3_server, unique("t"))
    yield blobs
    await blobs.close()


async def test_put_exists_stream_delete(store: S3BlobStore, s3_server: S3Server, tmp_path: Path) -> None:
    data = os.urandom(2500)
    digest, source = write_blob(tmp_path, data)
    assert not await store.exists(digest)
    await store.put(digest, source)
    assert not source.exists()  # consumed
    assert await store.exists(digest)
    assert keys_under(s3_server, store.prefix) == [f"{store.prefix}/{blob_key(digest)}"]
    chunks = await read_all(store, digest, chunk_size=1000)
    assert [len(c) for c in chunks] == [1000, 1000, 500] and b"".join(chunks) == data
    await store.delete(digest)
    assert not await store.exists(digest) and keys_under(s3_server, store.prefix) == []
    await store.delete(digest)  # deleting a missing blob is not an error


async def test_identical_content_is_stored_once(store: S3BlobStore, s3_server: S3Server, tmp_path: Path) -> None:
    data = b"same weights" * 1000
    digest, first = write_blob(tmp_path, data)
    await store.put(digest, first)
    assert b"".join(await read_all(store, digest)) == data
    key = store.key_of(digest)
    client = s3_server.client()
    # Content addressing trusts what is stored under a digest: plant a marker there to see that a second
    # put skips the upload (an identical re-upload would be indistinguishable: same bytes, same ETag).
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=b"already stored")
    _, second = write_blob(tmp_path, data)
    await store.put(digest, second)
    assert not second.exists()  # the duplicate is consumed, not left in the spool folder
    assert keys_under(s3_server, store.prefix) == [key]
    assert b"".join(await read_all(store, digest)) == b"already stored"


def multipart_etag(server: S3Server, key: str) -> bool:
    # A multipart object's ETag is "<md5 of part md5s>-<part count>"; a single PUT's is the plain MD5.
    return "-" in server.client().head_object(Bucket=server.bucket, Key=key)["ETag"]


async def test_large_blob_goes_multipart_and_reads_back(s3_server: S3Server, tmp_path: Path) -> None:
    data = os.urandom(12 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    multipart = make_store(s3_server, unique("mp"), multipart_threshold=5 * MiB)
    single = make_store(s3_server, unique("sp"), multipart_threshold=16 * MiB)
    try:
        for store in (multipart, single):
            await store.put(digest, write_blob(tmp_path, data)[1])
        # The threshold decides, both ways (boto3's own default of 8 MiB would make both multipart).
        assert multipart_etag(s3_server, multipart.key_of(digest))
        assert not multipart_etag(s3_server, single.key_of(digest))
        parts = s3_server.client().head_object(Bucket=s3_server.bucket, Key=multipart.key_of(digest), PartNumber=1)
        assert parts["PartsCount"] >= 2
        chunks = await read_all(multipart, digest)
        assert max(len(c) for c in chunks) <= MiB  # streamed, not one buffered body
        assert b"".join(chunks) == data
        assert s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads", []) == []
    finally:
        await multipart.close()
        await single.close()


async def test_streaming_a_missing_blob_raises_file_not_found(store: S3BlobStore) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert not await store.exists(missing)
    with pytest.raises(FileNotFoundError):
        await read_all(store, missing)


async def test_put_of_a_vanished_source_raises_and_stores_nothing(
    store: S3BlobStore, s3_server: S3Server, tmp_path: Path
) -> None:
    digest, source = write_blob(tmp_path, b"gone before put")
    source.unlink()
    with pytest.raises(FileNotFoundError):
        await store.put(digest, source)
    assert keys_under(s3_server, store.prefix) == [] and not await store.exists(digest)


async def test_wrong_credentials_are_an_error_not_a_missing_blob(s3_server: S3Server) -> None:
    # A HEAD that fails on auth must not read as "not stored" (that would re-upload, or 404 a download).
    store = make_store(s3_server, "any", secret_access_key="not-the-secret")
    try:
        with pytest.raises(ClientError):
            await store.exists(hashlib.sha256(b"x").hexdigest())
    finally:
        await store.close()


async def test_open_store_reads_bucket_prefix_and_credentials_from_settings(
    s3_server: S3Server, tmp_path: Path
) -> None:
    prefix = f"{unique('cfg')}/nested"
    settings = Settings(
        data_dir=tmp_path,
        blob_store_url=f"s3://{s3_server.bucket}/{prefix}/",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_region=s3_server.region,
        s3_access_key_id=s3_server.access_key,
        s3_secret_access_key=s3_server.secret_key,
        s3_multipart_threshold=7 * MiB,
    )
    store = open_store(settings)
    try:
        assert isinstance(store, S3BlobStore) and store.bucket == s3_server.bucket and store.prefix == prefix
        digest, source = write_blob(tmp_path, b"configured")
        await store.put(digest, source)
        assert keys_under(s3_server, prefix) == [f"{prefix}/{blob_key(digest)}"]
    finally:
        await store.close()


async def test_api_artifacts_and_versions_on_s3(
    db: Database, settings: Settings, api_tokens: Tokens, s3_server: S3Server
) -> None:
    from registry.api.app import create_app

    store = make_store(s3_server, unique("api"), multipart_threshold=5 * MiB)
    app = create_app(settings, db=db, store=store)
    weights, config = os.urandom(6 * MiB + 123), b'{"layers": 4}'
    weights_sha, config_sha = hashlib.sha256(weights).hexdigest(), hashlib.sha256(config).hexdigest()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://registry",
            headers={"authorization": f"Bearer {api_tokens.admin}"},
        ) as client:
            run_id = (await client.post("/api/v1/runs", json={})).json()["id"]
            files_url = f"/api/v1/runs/{run_id}/artifacts"
            up = await client.put(f"{files_url}/model/weights.bin", content=weights)
            assert up.status_code == 201, up.text
            assert up.json() == {"path": "model/weights.bin", "sha256": weights_sha, "size": len(weights)}
            assert (await client.put(f"{files_url}/model/config.json", content=config)).status_code == 201
            # The same bytes under another path: a second row, still one object.
            assert (await client.put(f"{files_url}/copy.bin", content=weights)).status_code == 201

            down = await client.get(f"{files_url}/model/weights.bin")
            assert down.status_code == 200 and down.content == weights
            assert down.headers["x-content-sha256"] == weights_sha
            blob = await client.get(f"/api/v1/blobs/{weights_sha}")
            assert blob.status_code == 200 and blob.content == weights

            name = unique()
            assert (await client.post("/api/v1/models", json={"name": name})).status_code == 201
            made = await client.post(f"/api/v1/models/{name}/versions", json={"run_id": run_id, "path": "model"})
            assert made.status_code == 201, made.text
            files = {f["path"]: f["sha256"] for f in made.json()["files"]}
            assert files == {"weights.bin": weights_sha, "config.json": config_sha}
    finally:
        await store.close()

    assert keys_under(s3_server, store.prefix) == sorted(
        f"{store.prefix}/{blob_key(sha)}" for sha in (weights_sha, config_sha)
    )
    assert list(settings.tmp_dir.glob("*.part")) == []  # spool files were consumed
