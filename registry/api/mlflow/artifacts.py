"""MLflow's proxied artifact store (``mlflow-artifacts:/...``), mapped onto run file trees and version manifests.

Paths: ``<experiment>/<run_id>/artifacts/<rel>`` is a run's tree (read-write); ``registry/<model_id>/<version>/<rel>``
is a model version's immutable snapshot (read-only; what ``get-download-uri`` hands out).
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, put
from litestar.response import Stream

from registry.api._bytes import blob_response, ingest
from registry.api.mlflow import _wire as wire
from registry.api.security import WRITER
from registry.api.v1._common import raw_tail
from registry.db import Database
from registry.errors import InvalidInput, NotFound
from registry.services import artifacts, names, runs, versions
from registry.services.artifacts import ManifestEntry
from registry.settings import Settings
from registry.storage import BlobStore

REGISTRY_PREFIX = "registry"


@dataclass(frozen=True, slots=True)
class Location:
    run_id: str | None
    model_id: int | None
    version: int | None
    rel: str


def version_uri(model_id: int, version: int) -> str:
    return f"mlflow-artifacts:/{REGISTRY_PREFIX}/{model_id}/{version}"


def locate(path: str) -> Location:
    """Split an artifact path into what it addresses; anything else is an invalid path."""
    clean = names.artifact_path(path, allow_empty=True)
    parts = clean.split("/") if clean else []
    if len(parts) >= 3 and parts[0] == REGISTRY_PREFIX and parts[1].isdigit() and parts[2].isdigit():
        return Location(run_id=None, model_id=int(parts[1]), version=int(parts[2]), rel="/".join(parts[3:]))
    if len(parts) >= 3 and parts[0].isdigit() and parts[2] == "artifacts":
        return Location(run_id=parts[1], model_id=None, version=None, rel="/".join(parts[3:]))
    raise InvalidInput(f"artifact path {path!r} is not inside a run (<experiment>/<run_id>/artifacts/...)")


def listing(entries: list[ManifestEntry], rel: str) -> dict[str, Any]:
    """Immediate children of folder ``rel`` (basenames), as the client expects; a file or nothing → empty."""
    prefix = f"{rel}/" if rel else ""
    dirs: set[str] = set()
    files: list[dict[str, Any]] = []
    for entry in entries:
        if not entry.path.startswith(prefix):
            continue
        head, sep, _ = entry.path[len(prefix) :].partition("/")
        if sep:
            dirs.add(head)
        else:
            item: dict[str, Any] = {"path": head, "is_dir": False}
            if entry.size:
                item["file_size"] = entry.size
            files.append(item)
    listed = [{"path": d, "is_dir": True} for d in sorted(dirs)] + sorted(files, key=lambda f: f["path"])
    return {"files": listed} if listed else {}


async def _entries(db: Database, where: Location) -> list[ManifestEntry]:
    async with db.read() as session:
        if where.run_id is not None:
            try:
                files = await artifacts.list_run_files(session, run_id=where.run_id, prefix=where.rel)
            except NotFound:
                return []
            return [ManifestEntry(path=f.path, sha256=f.sha256, size=f.size) for f in files]
        assert where.model_id is not None and where.version is not None
        try:
            _, found = await versions.by_model_id(session, model_id=where.model_id, version=where.version)
        except NotFound:
            return []
        return await versions.files_of(session, version_id=found.id)


class ArtifactsController(Controller):
    path = "/artifacts"

    @get("/")
    async def list_artifacts(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        where = locate(wire.query(request, "path", required=False))
        return listing(await _entries(db, where), where.rel)

    @put("/{path:path}", guards=WRITER, request_max_body_size=None, status_code=200)
    async def upload(
        self, path: str, request: Request[Any, Any, Any], db: Database, store: BlobStore, settings: Settings
    ) -> dict[str, Any]:
        where = locate(raw_tail(request, "/mlflow-artifacts/artifacts/", path))
        if where.run_id is None:
            raise InvalidInput("model version files are immutable; log artifacts to a run instead")
        rel = names.artifact_path(where.rel)
        async with db.read() as session:
            await runs.get(session, run_id=where.run_id, for_write=True)
        digest, size = await ingest(request, store, settings)
        async with db.write() as session:
            await artifacts.put_run_file(session, run_id=where.run_id, path=rel, sha256=digest, size=size, store=store)
        return {}

    @get("/{path:path}")
    async def download(self, path: str, request: Request[Any, Any, Any], db: Database, store: BlobStore) -> Stream:
        where = locate(raw_tail(request, "/mlflow-artifacts/artifacts/", path))
        rel = names.artifact_path(where.rel)
        async with db.read() as session:
            if where.run_id is not None:
                file = await artifacts.get_run_file(session, run_id=where.run_id, path=rel)
                sha256, size = file.sha256, file.size
            else:
                assert where.model_id is not None and where.version is not None
                _, found = await versions.by_model_id(session, model_id=where.model_id, version=where.version)
                match = [f for f in await versions.files_of(session, version_id=found.id) if f.path == rel]
                if not match:
                    raise NotFound(f"version has no file {rel!r}")
                sha256, size = match[0].sha256, match[0].size
        filename = rel.rsplit("/", 1)[-1]
        media_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return await blob_response(store, sha256, size, filename=filename, media_type=media_type)
