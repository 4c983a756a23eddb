"""Bytes in and out: content-addressed blobs, run artifact trees, named artifact versions (datasets ...).

Uploads are streamed to a spool file while hashed (never buffered whole) and no database transaction is
held while bytes flow; the rows are written in a short transaction afterwards.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, head, post, put
from litestar.response import Stream

from registry.api._bytes import blob_response, ingest
from registry.api.security import WRITER
from registry.api.v1._common import NonNegativeInt64, id_or_404, iso, raw_tail
from registry.db import Database
from registry.domain.artifacts import ArtifactVersion
from registry.services import artifacts, names, runs
from registry.services.artifacts import ManifestEntry
from registry.services.auth import Actor
from registry.settings import Settings
from registry.storage import BlobStore


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
