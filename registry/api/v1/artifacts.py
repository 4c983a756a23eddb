"""Bytes in and out: content-addressed blobs, run artifact trees, named artifact versions (datasets ...).

Uploads are streamed to a spool file while hashed (never buffered whole) and no database transaction is
held while bytes flow; the rows are written in a short transaction afterwards.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, head, post, put
from litestar.response import Stream

from registry import observability
from registry.api._bytes import blob_response, ingest
from registry.api.security import WRITER
from registry.api.v1._common import NonNegativeInt64, id_or_404, iso, raw_tail
from registry.db import Database
from registry.domain.artifacts import ArtifactVersion
from registry.errors import Conflict, InvalidInput, PayloadTooLarge
from registry.services import artifacts, names, runs
from registry.services.artifacts import ManifestEntry
from registry.services.auth import Actor
from registry.settings import Settings
from registry.storage import BlobStore
from registry.storage.direct import MAX_PARTS, DirectTransfers


class FileOut(msgspec.Struct):
    path: str
    sha256: str
    size: NonNegativeInt64


class ArtifactVersionIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    kind: str = "dataset"
    run_id: str | None = None
    path: str | None = None
    files: list[FileOut] | None = None
    description: str | None = None


class ArtifactVersionOut(msgspec.Struct):
    name: str
    version: int
    kind: str
    digest: str
    run_id: str | None
    source_path: str | None
    description: str | None
    created_by: str
    created_at: str | None
    files: list[FileOut] = []


def render_version(v: ArtifactVersion, files: list[ManifestEntry]) -> ArtifactVersionOut:
    return ArtifactVersionOut(
        name=v.name,
        version=v.version,
        kind=v.kind,
        digest=v.digest,
        run_id=v.run_id,
        source_path=v.source_path,
        description=v.description,
        created_by=v.created_by,
        created_at=iso(v.created_at),
        files=[FileOut(path=f.path, sha256=f.sha256, size=f.size) for f in files],
    )


class BlobsController(Controller):
    path = "/blobs"

    @put("/{sha256:str}", guards=WRITER, request_max_body_size=None, status_code=201)
    async def upload_blob(
        self, sha256: str, request: Request[Any, Any, Any], db: Database, store: BlobStore, settings: Settings
    ) -> FileOut:
        """Upload bytes under their sha256; the server verifies the digest (400 on mismatch, nothing kept)."""
        artifacts.check_digest(sha256)
        digest, size = await ingest(request, store, settings, expected=sha256)
        async with db.write() as session:
            await artifacts.record_blob(session, sha256=digest, size=size, store=store)
        return FileOut(path="", sha256=digest, size=size)

    @head("/{sha256:str}")
    async def blob_exists(self, sha256: str, db: Database) -> Response[None]:
        async with db.read() as session:
            blob = await artifacts.get_blob(session, sha256=artifacts.check_digest(sha256))
        return Response(None, headers={"content-length": str(blob.size), "x-content-sha256": sha256})

    @get("/{sha256:str}")
    async def download_blob(self, sha256: str, db: Database, store: BlobStore) -> Stream:
        async with db.read() as session:
            blob = await artifacts.get_blob(session, sha256=artifacts.check_digest(sha256))
        return await blob_response(store, blob.sha256, blob.size)

    @get("/{sha256:str}/url")
    async def blob_url(self, sha256: str, db: Database, store: BlobStore) -> BlobUrlOut:
        """A presigned GET of the blob's bytes straight from the S3 bucket (409 ``direct_unavailable`` on a
        store that has none: download ``GET /blobs/{sha256}`` instead)."""
        transfers = direct_transfers(store)
        async with db.read() as session:
            blob = await artifacts.get_blob(session, sha256=artifacts.check_digest(sha256))
        url, expires_at = transfers.download_url(blob.sha256)
        return BlobUrlOut(url=url, sha256=blob.sha256, size=blob.size, expires_at=iso(expires_at) or "")


class UploadIn(msgspec.Struct, forbid_unknown_fields=True):
    sha256: str
    size: NonNegativeInt64


class PartOut(msgspec.Struct):
    number: int
    url: str
    size: int


class UploadOut(msgspec.Struct):
    sha256: str
    size: int
    exists: bool
    """True when the registry already holds these bytes: nothing to send."""
    upload_id: str | None = None
    mode: str | None = None
    part_size: int | None = None
    parts: list[PartOut] = []
    headers: dict[str, str] = {}
    expires_at: str | None = None


class PartDone(msgspec.Struct, forbid_unknown_fields=True):
    number: int
    etag: str


class CompleteIn(msgspec.Struct, forbid_unknown_fields=True):
    sha256: str
    size: NonNegativeInt64
    parts: list[PartDone] = []


class UploadDone(msgspec.Struct):
    sha256: str
    size: int
    verified_by: str
    """``store-checksum`` (the store checked the SHA-256 as the bytes arrived) or ``read-back`` (the registry
    read the uploaded object and hashed it)."""


class BlobUrlOut(msgspec.Struct):
    url: str
    sha256: str
    size: int
    expires_at: str


def direct_transfers(store: BlobStore) -> DirectTransfers:
    transfers = getattr(store, "direct", None)
    if not isinstance(transfers, DirectTransfers):
        raise Conflict(
            "this registry offers no direct transfers (its blob store is not S3, or "
            "MODELKEEP_S3_DIRECT_TRANSFERS is off): send the bytes to PUT /api/v1/blobs/{sha256}",
            code="direct_unavailable",
        )
    return transfers


class UploadsController(Controller):
    """Direct uploads to S3 over presigned URLs (see ``registry.storage.direct``): start one, PUT the bytes
    to the URLs it lists (with its ``headers``), then complete it; the registry verifies the sha256 before
    the blob exists."""

    path = "/uploads"
    guards = WRITER

    @post("/", status_code=201)
    async def start_upload(self, data: UploadIn, db: Database, store: BlobStore, settings: Settings) -> UploadOut:
        sha256 = artifacts.check_digest(data.sha256)
        if data.size > settings.max_upload_bytes:
            raise PayloadTooLarge(
                f"{data.size} bytes is more than the configured limit (MODELKEEP_MAX_UPLOAD_BYTES)", field="size"
            )
        transfers = direct_transfers(store)
        async with db.read() as session:
            known = await artifacts.find_blob(session, sha256=sha256)
        if known is not None and await store.exists(sha256):
            return UploadOut(sha256=sha256, size=known.size, exists=True)
        plan = await transfers.plan(sha256=sha256, size=data.size)
        return UploadOut(
            sha256=sha256,
            size=data.size,
            exists=False,
            upload_id=plan.upload_id,
            mode=plan.mode,
            part_size=plan.part_size,
            parts=[PartOut(number=p.number, url=p.url, size=p.size) for p in plan.parts],
            headers=plan.headers,
            expires_at=iso(plan.expires_at),
        )

    @post("/{upload_id:str}/complete", status_code=201)
    async def complete_upload(
        self, upload_id: str, data: CompleteIn, db: Database, store: BlobStore, settings: Settings
    ) -> UploadDone:
        """Verify the uploaded bytes (size and sha256) and record the blob. 400 ``digest_mismatch`` or
        ``size_mismatch`` when they are not what was declared: the bytes are deleted, nothing is recorded."""
        sha256 = artifacts.check_digest(data.sha256)
        if data.size > settings.max_upload_bytes:
            raise PayloadTooLarge(
                f"{data.size} bytes is more than the configured limit (MODELKEEP_MAX_UPLOAD_BYTES)", field="size"
            )
        transfers = direct_transfers(store)
        etags = {p.number: p.etag for p in data.parts}
        if len(etags) != len(data.parts):
            raise InvalidInput("each part number once", field="parts")
        if any(not 1 <= n <= MAX_PARTS or not tag for n, tag in etags.items()):
            raise InvalidInput(f"part numbers run from 1 to {MAX_PARTS}, each with its ETag", field="parts")
        verified = await transfers.complete(upload_id=upload_id, sha256=sha256, size=data.size, etags=etags or None)
        observability.metrics().upload_bytes.labels("direct").inc(verified.size)
        async with db.write() as session:
            await artifacts.record_blob(session, sha256=sha256, size=verified.size, store=store)
        return UploadDone(
            sha256=sha256, size=verified.size, verified_by="read-back" if verified.read_back else "store-checksum"
        )

    @delete("/{upload_id:str}", status_code=204)
    async def abort_upload(self, upload_id: str, store: BlobStore) -> None:
        """Give up an upload: its parts and staged bytes are deleted."""
        await direct_transfers(store).abort(upload_id)


class RunArtifactsController(Controller):
    path = "/runs/{run_id:str}/artifacts"

    @put("/{path:path}", guards=WRITER, request_max_body_size=None, status_code=201)
    async def upload(
        self,
        run_id: str,
        path: str,
        request: Request[Any, Any, Any],
        db: Database,
        store: BlobStore,
        settings: Settings,
    ) -> FileOut:
        clean = names.artifact_path(raw_tail(request, "/artifacts/", path))
        async with db.read() as session:  # fail fast, before reading any bytes
            await runs.get(session, run_id=run_id, for_write=True)
        digest, size = await ingest(request, store, settings)
        async with db.write() as session:
            file = await artifacts.put_run_file(
                session, run_id=run_id, path=clean, sha256=digest, size=size, store=store
            )
            return FileOut(path=file.path, sha256=file.sha256, size=file.size)

    @get("/")
    async def list_files(self, run_id: str, db: Database, prefix: str = "") -> list[FileOut]:
        clean = names.artifact_path(prefix, allow_empty=True)
        async with db.read() as session:
            files = await artifacts.list_run_files(session, run_id=run_id, prefix=clean)
        return [FileOut(path=f.path, sha256=f.sha256, size=f.size) for f in files]

    @get("/{path:path}")
    async def download(
        self, run_id: str, path: str, request: Request[Any, Any, Any], db: Database, store: BlobStore
    ) -> Stream:
        clean = names.artifact_path(raw_tail(request, "/artifacts/", path))
        async with db.read() as session:
            file = await artifacts.get_run_file(session, run_id=run_id, path=clean)
        return await blob_response(store, file.sha256, file.size, filename=clean.rsplit("/", 1)[-1])


class ArtifactVersionsController(Controller):
    path = "/artifacts"

    @post("/", guards=WRITER, status_code=201)
    async def create_version(self, data: ArtifactVersionIn, db: Database, actor: Actor) -> ArtifactVersionOut:
        """Freeze a named artifact version (a dataset, an eval table ...) from a run folder or a manifest."""
        entries = [ManifestEntry(path=f.path, sha256=f.sha256, size=f.size) for f in data.files] if data.files else None
        async with db.write() as session:
            version, files = await artifacts.create_version(
                session,
                name=data.name,
                kind=data.kind,
                actor=actor,
                run_id=data.run_id,
                path=data.path,
                entries=entries,
                description=data.description,
            )
            return render_version(version, files)

    @get("/{name:str}/versions")
    async def list_versions(self, name: str, db: Database) -> list[ArtifactVersionOut]:
        async with db.read() as session:
            return [render_version(v, []) for v in await artifacts.list_versions(session, name=name)]

    @get("/{name:str}/versions/{version:int}")
    async def get_version(self, name: str, version: int, db: Database) -> ArtifactVersionOut:
        async with db.read() as session:
            found = await artifacts.get_version(session, name=name, version=id_or_404(version, f"{name} version"))
            return render_version(found, await artifacts.version_files(session, artifact_id=found.id))
