"""Direct transfers on a real SeaweedFS: presigned single and multipart uploads verified before a blob exists,
lying or short uploads refused with nothing stored, presigned downloads, and the SDK using them (or streaming
where the registry offers none)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.api.app import create_app
from registry.client.api import RegistryClient
from registry.db import Database
from registry.settings import Settings
from registry.storage import blob_key
from registry.storage.direct import part_size_for
from registry.storage.local import LocalBlobStore
from registry.storage.s3 import DirectSettings
from tests.conftest import LiveServer, Tokens, start_server, stop_server, unique
from tests.fixtures.seaweed import S3Server
from tests.registry.storage.test_s3 import keys_under, make_store

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Api:
    """The registry app in-process on an S3 store under its own prefix, plus a plain client for the bucket."""

    def __init__(self, client: httpx.AsyncClient, prefix: str, server: S3Server) -> None:
        self.client, self.prefix, self.server = client, prefix, server

    async def start(self, digest: str, size: int) -> dict[str, Any]:
        response = await self.client.post("/api/v1/uploads", json={"sha256": digest, "size": size})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def keys(self) -> list[str]:
        return keys_under(self.server, self.prefix)


async def make_api(
    db: Database, settings: Settings, tokens: Tokens, server: S3Server, **direct: Any
) -> AsyncIterator[Api]:
    prefix = unique("direct")
    store = make_store(server, prefix, direct=DirectSettings(**{"part_bytes": 5 * MiB, **direct}))
    app = create_app(settings, db=db, store=store)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://registry",
        headers={"authorization": f"Bearer {tokens.writer}"},
    ) as client:
        yield Api(client, prefix, server)
    await store.close()


@pytest.fixture
async def single(db: Database, settings: Settings, api_tokens: Tokens, s3_server: S3Server) -> AsyncIterator[Api]:
    async for api in make_api(db, settings, api_tokens, s3_server):
        yield api


@pytest.fixture
async def multipart(db: Database, settings: Settings, api_tokens: Tokens, s3_server: S3Server) -> AsyncIterator[Api]:
    async for api in make_api(db, settings, api_tokens, s3_server, single_put_max=0):
        yield api


def put_parts(plan: dict[str, Any], data: bytes, *, headers: dict[str, str] | None = None) -> list[httpx.Response]:
    """PUT each part to its presigned URL, in parallel, as a client would (no registry token)."""
    size = int(plan["part_size"])

    def send(part: dict[str, Any]) -> httpx.Response:
        start = (part["number"] - 1) * size
        body = data[start : start + part["size"]]
        return httpx.put(part["url"], content=body, headers=headers if headers is not None else plan["headers"])

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(send, plan["parts"]))


def etags(plan: dict[str, Any], responses: list[httpx.Response]) -> list[dict[str, Any]]:
    return [{"number": p["number"], "etag": r.headers["etag"]} for p, r in zip(plan["parts"], responses, strict=True)]


def test_part_sizes_stay_within_ten_thousand_parts() -> None:
    assert part_size_for(2 * 1024**3, 64 * MiB) == 64 * MiB
    assert part_size_for(100, 64 * MiB) == 64 * MiB
    for size in (1024**4, 5 * 1024**4 - 1, 700 * 1024**3 + 3):
        part = part_size_for(size, 64 * MiB)
        assert part % MiB == 0 and -(-size // part) <= 10_000 and part <= 5 * 1024**3


async def test_a_single_put_is_verified_by_the_stores_checksum(single: Api) -> None:
    data = os.urandom(3 * MiB + 17)
    digest = sha(data)
    plan = await single.start(digest, len(data))
    assert plan["exists"] is False and plan["mode"] == "single" and len(plan["parts"]) == 1
    assert plan["headers"] == {"x-amz-checksum-sha256": base64.b64encode(bytes.fromhex(digest)).decode()}
    assert "X-Amz-Signature" in plan["parts"][0]["url"] and plan["expires_at"]
    # Not a blob yet: nothing is visible until the upload is completed and verified.
    assert (await single.client.head(f"/api/v1/blobs/{digest}")).status_code == 404
    [put] = put_parts(plan, data)
    assert put.status_code == 200, put.text
    done = await single.client.post(
        f"/api/v1/uploads/{plan['upload_id']}/complete", json={"sha256": digest, "size": len(data)}
    )
    assert done.status_code == 201, done.text
    assert done.json() == {"sha256": digest, "size": len(data), "verified_by": "store-checksum"}
    assert single.keys() == [f"{single.prefix}/{blob_key(digest)}"], "staged bytes moved to the blob's key"
    got = await single.client.get(f"/api/v1/blobs/{digest}")
    assert got.status_code == 200 and got.content == data
    # Asked again: the registry has it, nothing to send.
    again = await single.start(digest, len(data))
    assert again["exists"] is True and again["parts"] == [] and again["upload_id"] is None


async def test_a_multipart_upload_is_read_back_and_verified(multipart: Api) -> None:
    data = os.urandom(12 * MiB + 5)
    digest = sha(data)
    plan = await multipart.start(digest, len(data))
    assert plan["mode"] == "multipart" and plan["part_size"] == 5 * MiB
    assert [p["size"] for p in plan["parts"]] == [5 * MiB, 5 * MiB, 2 * MiB + 5]
    responses = put_parts(plan, data)
    assert all(r.status_code == 200 for r in responses)
    done = await multipart.client.post(
        f"/api/v1/uploads/{plan['upload_id']}/complete",
        json={"sha256": digest, "size": len(data), "parts": etags(plan, responses)},
    )
    assert done.status_code == 201, done.text
    assert done.json()["verified_by"] == "read-back"
    assert multipart.keys() == [f"{multipart.prefix}/{blob_key(digest)}"]
    url = await multipart.client.get(f"/api/v1/blobs/{digest}/url")
    assert url.status_code == 200 and url.json()["size"] == len(data)
    async with httpx.AsyncClient() as bucket:  # straight from the bucket, no token
        fetched = await bucket.get(url.json()["url"])
    assert fetched.status_code == 200 and fetched.content == data


async def test_a_multipart_upload_that_lies_about_its_digest_is_refused_and_removed(multipart: Api) -> None:
    real, claimed = os.urandom(6 * MiB), os.urandom(6 * MiB)
    plan = await multipart.start(sha(claimed), len(real))
    responses = put_parts(plan, real)
    done = await multipart.client.post(
        f"/api/v1/uploads/{plan['upload_id']}/complete",
        json={"sha256": sha(claimed), "size": len(real), "parts": etags(plan, responses)},
    )
    assert done.status_code == 400 and done.json()["code"] == "digest_mismatch"
    assert done.headers["content-type"].startswith("application/problem+json")
    assert multipart.keys() == [], "neither the staged bytes nor a blob under the claimed digest remain"
    assert (await multipart.client.head(f"/api/v1/blobs/{sha(claimed)}")).status_code == 404
    # Completing it again finds nothing.
    again = await multipart.client.post(
        f"/api/v1/uploads/{plan['upload_id']}/complete",
        json={"sha256": sha(claimed), "size": len(real), "parts": etags(plan, responses)},
    )
    assert again.status_code == 404 and again.json()["code"] == "unknown_upload"


async def test_a_single_put_that_lies_is_refused_by_the_store_or_the_registry(single: Api) -> None:
    real, claimed = os.urandom(MiB), os.urandom(MiB)
    plan = await single.start(sha(claimed), len(real))
    # With the signed checksum of the claimed bytes, the store refuses the real ones.
    [refused] = put_parts(plan, real)
    assert refused.status_code in (400, 403)
    # With the real bytes' own checksum instead, the signature or the registry refuses.
    own = {"x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(real).digest()).decode()}
    [sent] = put_parts(plan, real, headers=own)
    done = await single.client.post(
        f"/api/v1/uploads/{plan['upload_id']}/complete", json={"sha256": sha(claimed), "size": len(real)}
    )
    if sent.status_code == 200:
        assert done.status_code == 400 and done.json()["code"] == "digest_mismatch"
    else:
        assert done.status_code == 404 and done.json()["code"] == "unknown_upload"
    assert single.keys() == []
    assert (await single.client.head(f"/api/v1/blobs/{sha(claimed)}")).status_code == 404


async def test_a_short_upload_is_a_size_mismatch(multipart: Api) -> None:
    data = os.urandom(11 * MiB)
    plan = await multipart.start(sha(data), len(data))
    responses = put_parts(plan, data[: 10 * MiB] + b"")  # the last part never sent in full
    done = await multipart.client.post(
        f"/api/v1/uploads/{plan['upload_id']}/complete",
        json={"sha256": sha(data), "size": len(data), "parts": etags(plan, responses)},
    )
    assert done.status_code == 400 and done.json()["code"] == "size_mismatch"
    assert multipart.keys() == []


async def test_aborting_removes_the_parts(multipart: Api) -> None:
    data = os.urandom(6 * MiB)
    plan = await multipart.start(sha(data), len(data))
    put_parts(plan, data)
    assert (await multipart.client.delete(f"/api/v1/uploads/{plan['upload_id']}")).status_code == 204
    gone = await multipart.client.post(
        f"/api/v1/uploads/{plan['upload_id']}/complete",
        json={"sha256": sha(data), "size": len(data), "parts": [{"number": 1, "etag": "x"}]},
    )
    assert gone.status_code == 404
    assert multipart.keys() == []


@pytest.mark.parametrize(
    "upload_id",
    [
        "nonsense",
        "eyJzIjoiLi4vLi4vZXRjIiwibSI6bnVsbH0",
        "eyJzIjoiMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAiLCJtIjoxfQ",
    ],
)
async def test_upload_ids_this_server_did_not_hand_out_are_refused(single: Api, upload_id: str) -> None:
    done = await single.client.post(f"/api/v1/uploads/{upload_id}/complete", json={"sha256": "a" * 64, "size": 1})
    assert done.status_code in (400, 404) and done.json()["code"] == "unknown_upload"


async def test_bad_requests_are_4xx(single: Api, settings: Settings) -> None:
    for body in ({"sha256": "A" * 64, "size": 1}, {"sha256": "a" * 64, "size": -1}, {"sha256": "a" * 64}):
        response = await single.client.post("/api/v1/uploads", json=body)
        assert response.status_code == 400, body
    huge = await single.client.post("/api/v1/uploads", json={"sha256": "a" * 64, "size": settings.max_upload_bytes + 1})
    assert huge.status_code == 413


async def test_a_registry_on_a_local_folder_offers_no_direct_transfers(
    app_client: httpx.AsyncClient,
) -> None:
    response = await app_client.post("/api/v1/uploads", json={"sha256": "a" * 64, "size": 10})
    assert response.status_code == 409 and response.json()["code"] == "direct_unavailable"
    url = await app_client.get(f"/api/v1/blobs/{'a' * 64}/url")
    assert url.status_code == 409 and url.json()["code"] == "direct_unavailable"


async def test_readers_cannot_start_uploads(single: Api, api_tokens: Tokens) -> None:
    response = await single.client.post(
        "/api/v1/uploads",
        json={"sha256": "a" * 64, "size": 10},
        headers={"authorization": f"Bearer {api_tokens.reader}"},
    )
    assert response.status_code == 403


# -- the SDK ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_registry(
    database_url: str, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, str]]:
    prefix = unique("sdk")
    env = {
        "MODELKEEP_BLOB_STORE_URL": f"s3://{s3_server.bucket}/{prefix}",
        "MODELKEEP_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "MODELKEEP_S3_ACCESS_KEY_ID": s3_server.access_key,
        "MODELKEEP_S3_SECRET_ACCESS_KEY": s3_server.secret_key,
        "MODELKEEP_S3_PART_BYTES": str(5 * MiB),
        "MODELKEEP_S3_SINGLE_PUT_MAX_BYTES": str(10 * MiB),
        "MODELKEEP_METRICS_PUBLIC": "true",
    }
    server = start_server(database_url, tmp_path_factory.mktemp("sdk-direct"), extra_env=env)
    yield server, prefix
    stop_server(server)


def direct_bytes(server: LiveServer) -> tuple[float, float]:
    from tests.registry.api.test_observability import value

    text = httpx.get(f"{server.url}/metrics").text
    return value(text, "modelkeep_upload_bytes_total", kind="direct"), value(
        text, "modelkeep_upload_bytes_total", kind="streamed"
    )


def test_the_sdk_pushes_and_pulls_through_the_bucket(
    s3_registry: tuple[LiveServer, str], api_tokens: Tokens, tmp_path: Path
) -> None:
    server, _prefix = s3_registry
    folder = tmp_path / "model"
    folder.mkdir()
    files = {"big.bin": os.urandom(17 * MiB + 3), "mid.bin": os.urandom(9 * MiB), "small.json": b'{"a": 1}'}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    before_direct, before_streamed = direct_bytes(server)
    seen: list[int] = []
    with RegistryClient(server.url, api_tokens.writer) as api:
        version = api.push(unique("sdk"), folder, progress=seen.append)
        assert api.direct is None, "the registry offers direct transfers: the client keeps using them"
        out = tmp_path / "pulled"
        api.pull(f"{version['model']}/{version['version']}", out)
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    after_direct, after_streamed = direct_bytes(server)
    # Both large files (one multipart, one single PUT) went to the bucket; only the small one streamed.
    assert after_direct - before_direct == len(files["big.bin"]) + len(files["mid.bin"])
    assert after_streamed - before_streamed == len(files["small.json"])
    assert sum(seen) == sum(len(d) for d in files.values())


def test_the_sdk_streams_where_the_registry_offers_no_direct_transfers(
    live_server: LiveServer, api_tokens: Tokens, tmp_path: Path
) -> None:
    data = os.urandom(9 * MiB)
    (tmp_path / "w.bin").write_bytes(data)
    with RegistryClient(live_server.url, api_tokens.writer) as api:
        version = api.push(unique("stream"), tmp_path / "w.bin")
        assert api.direct is False
        api.pull(f"{version['model']}/{version['version']}", tmp_path / "out")
    assert (tmp_path / "out" / "w.bin").read_bytes() == data


def test_the_local_store_type_has_no_direct_transfers(tmp_path: Path) -> None:
    assert getattr(LocalBlobStore(tmp_path), "direct", None) is None


async def test_the_collection_sweeps_abandoned_uploads_but_no_blobs(multipart: Api, s3_server: S3Server) -> None:
    kept = os.urandom(6 * MiB)
    plan = await multipart.start(sha(kept), len(kept))
    responses = put_parts(plan, kept)
    done = await multipart.client.post(
        f"/api/v1/uploads/{plan['upload_id']}/complete",
        json={"sha256": sha(kept), "size": len(kept), "parts": etags(plan, responses)},
    )
    assert done.status_code == 201
    abandoned = os.urandom(6 * MiB)
    put_parts(await multipart.start(sha(abandoned), len(abandoned)), abandoned)  # never completed
    staged_single = make_store(s3_server, multipart.prefix, direct=DirectSettings())
    assert staged_single.direct is not None
    small = os.urandom(1000)
    plan = await staged_single.direct.plan(sha256=sha(small), size=len(small))
    assert httpx.put(plan.parts[0].url, content=small, headers=plan.headers).status_code == 200  # noqa: ASYNC210
    assert len(multipart.keys()) == 2  # the blob and the staged single PUT (parts are not listed as objects)

    # A sweep now spares them: they are younger than the URLs' expiry plus an hour.
    assert await staged_single.direct.sweep() == 0
    # One whose URLs expired long ago (here: a cutoff in the future) removes both, and never the blob.
    late = make_store(s3_server, multipart.prefix, direct=DirectSettings(expires_seconds=-3605))
    assert late.direct is not None
    assert await late.direct.sweep() == 2
    assert multipart.keys() == [f"{multipart.prefix}/{blob_key(sha(kept))}"]
    uploads = s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket, Prefix=f"{multipart.prefix}/")
    assert uploads.get("Uploads", []) == []
    await staged_single.close()
    await late.close()


async def test_completing_checks_the_limit_and_the_part_numbers(multipart: Api, settings: Settings) -> None:
    data = os.urandom(6 * MiB)
    plan = await multipart.start(sha(data), len(data))
    url = f"/api/v1/uploads/{plan['upload_id']}/complete"
    # Declared small at the start, claimed huge at the end: refused before anything is read.
    huge = await multipart.client.post(url, json={"sha256": sha(data), "size": settings.max_upload_bytes + 1})
    assert huge.status_code == 413
    for parts in ([{"number": 0, "etag": "x"}], [{"number": 10_001, "etag": "x"}], [{"number": 1, "etag": ""}]):
        bad = await multipart.client.post(url, json={"sha256": sha(data), "size": len(data), "parts": parts})
        assert bad.status_code == 400 and bad.json()["field"] == "parts", parts
    # The upload is still there to complete properly.
    responses = put_parts(plan, data)
    done = await multipart.client.post(
        url, json={"sha256": sha(data), "size": len(data), "parts": etags(plan, responses)}
    )
    assert done.status_code == 201, done.text
