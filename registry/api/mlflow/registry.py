"""MLflow model-registry endpoints, over the same services (numbering, aliases, protection) as /api/v1."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post

from registry.api.mlflow import _wire as wire
from registry.api.mlflow.artifacts import locate, version_uri
from registry.api.security import WRITER
from registry.api.v1._common import INT64_MAX
from registry.api.v1.models import protected
from registry.db import Database, Session
from registry.domain.models import ModelVersion, RegisteredModel
from registry.errors import InvalidInput
from registry.services import aliases, models, search, versions
from registry.services.auth import Actor
from registry.settings import Settings


class ModelIn(msgspec.Struct):
    name: str | None = None
    description: str | None = None
    tags: list[wire.KeyValue] = []


class TagIn(msgspec.Struct):
    name: str | None = None
    key: str | None = None
    value: str | None = None
    version: str | None = None


class AliasIn(msgspec.Struct):
    name: str | None = None
    alias: str | None = None
    version: str | None = None


class VersionIn(msgspec.Struct):
    name: str | None = None
    source: str | None = None
    run_id: str | None = None
    description: str | None = None
    tags: list[wire.KeyValue] = []


class VersionRef(msgspec.Struct):
    name: str | None = None
    version: str | None = None
    stage: str | None = None
    archive_existing_versions: bool = False
    description: str | None = None


class LatestIn(msgspec.Struct):
    name: str | None = None
    stages: list[str] = []


def resolve_source(source: str, run_id: str | None) -> tuple[str, str]:
    """``runs:/<run>/<path>`` or ``mlflow-artifacts:/<exp>/<run>/artifacts/<path>`` → (run id, path in the run)."""
    if source.startswith("runs:/"):
        found_run, _, path = source.removeprefix("runs:/").strip("/").partition("/")
    elif source.startswith("mlflow-artifacts:"):
        rest = source.removeprefix("mlflow-artifacts:")
        if rest.startswith("//"):  # mlflow-artifacts://host:port/<path>
            rest = "/" + rest[2:].partition("/")[2]
        where = locate(rest.lstrip("/"))
        if where.run_id is None:
            raise InvalidInput(f"source {source!r} is a registered version, not a run's artifacts")
        found_run, path = where.run_id, where.rel
    else:
        raise InvalidInput(
            f"source {source!r} is not stored by this registry: use runs:/<run_id>/<path> or the run's "
            "mlflow-artifacts:/ URI (log the model to the run first)"
        )
    if run_id and run_id != found_run:
        raise InvalidInput(f"source {source!r} belongs to run {found_run}, not run_id {run_id}")
    return found_run, path


async def model_payload(session: Session, model: RegisteredModel) -> dict[str, Any]:
    latest = [wire.version_json(model.name, v) for v in await versions.latest_by_stage(session, model=model)]
    held = [(a.name, a.version) for a in await aliases.list_for_model(session, model_id=model.id)]
    return wire.model_json(model, tags=await models.tags_of(session, model_id=model.id), aliases=held, latest=latest)


async def version_payload(session: Session, model: RegisteredModel, version: ModelVersion) -> dict[str, Any]:
    """MLflow's model_version: the row plus its tags and aliases (MLflow never shows the file manifest)."""
    tags, held = await versions.labels(session, version=version)
    return wire.version_json(model.name, version, tags=tags, aliases=held)


async def version_by_name(session: Session, model_name: str, number: int) -> dict[str, Any]:
    model = await models.get(session, name=model_name)
    return await version_payload(session, model, await versions.get(session, model=model, version=number))


def _version(value: str | None) -> int:
    number = wire.parse_int(value, "version")
    if not 1 <= number <= INT64_MAX:  # beyond BIGINT the driver would overflow
        raise InvalidInput(f"version must be a positive integer, got {value!r}")
    return number


class RegistryController(Controller):
    path = "/"

    @post("/registered-models/create", guards=WRITER, status_code=200)
    async def create_model(self, request: Request[Any, Any, Any], db: Database, actor: Actor) -> dict[str, Any]:
        data = await wire.body(request, ModelIn)
        async with db.write() as session:
            model = await models.create(
                session,
                name=wire.require(data.name, "name"),
                actor=actor,
                description=data.description,
                tags={t.key: t.value or "" for t in data.tags},
            )
            return {"registered_model": await model_payload(session, model)}

    @get("/registered-models/get")
    async def get_model(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        async with db.read() as session:
            model = await models.get(session, name=wire.query(request, "name"))
            return {"registered_model": await model_payload(session, model)}

    @patch("/registered-models/update", guards=WRITER, status_code=200)
    async def update_model(self, request: Request[Any, Any, Any], db: Database, actor: Actor) -> dict[str, Any]:
        data = await wire.body(request, ModelIn)
        async with db.write() as session:
            model = await models.update(
                session, name=wire.require(data.name, "name"), actor=actor, description=data.description
            )
            return {"registered_model": await model_payload(session, model)}

    @get("/registered-models/search")
    async def search_models(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        async with db.read() as session:
            found, token = await search.search_models(
                session,
                filter=wire.query(request, "filter", required=False),
                order_by=request.query_params.getall("order_by", []) or None,
                max_results=wire.query_int(request, "max_results", 100),
                page_token=request.query_params.get("page_token") or None,
            )
            result: dict[str, Any] = {"registered_models": [await model_payload(session, m) for m in found]}
        if token:
            result["next_page_token"] = token
        return result

    @post("/registered-models/set-tag", guards=WRITER, status_code=200)
    async def set_model_tag(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        data = await wire.body(request, TagIn)
        async with db.write() as session:
            model = await models.get(session, name=wire.require(data.name, "name"))
            await models.set_tags(session, model=model, tags={wire.require(data.key, "key"): data.value or ""})
        return {}

    @delete("/registered-models/delete-tag", guards=WRITER, status_code=200)
    async def delete_model_tag(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        data = await wire.body(request, TagIn)
        async with db.write() as session:
            model = await models.get(session, name=wire.require(data.name, "name"))
            await models.delete_tag(session, model=model, key=wire.require(data.key, "key"))
        return {}

    @post("/registered-models/alias", guards=WRITER, status_code=200)
    async def set_alias(
        self, request: Request[Any, Any, Any], db: Database, actor: Actor, settings: Settings
    ) -> dict[str, Any]:
        data = await wire.body(request, AliasIn)
        async with db.write() as session:
            await aliases.set_alias(
                session,
                model_name=wire.require(data.name, "name"),
                alias=wire.require(data.alias, "alias"),
                version=_version(data.version),
                actor=actor,
                protected=protected(settings),
                reason="set through the MLflow API",
            )
        return {}

    @get("/registered-models/alias")
    async def get_alias(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        async with db.read(short=True) as session:
            model, version = await aliases.resolve(
                session, model_name=wire.query(request, "name"), alias=wire.query(request, "alias")
            )
            return {"model_version": await version_payload(session, model, version)}

    @delete("/registered-models/alias", guards=WRITER, status_code=200)
    async def delete_alias(
        self, request: Request[Any, Any, Any], db: Database, actor: Actor, settings: Settings
    ) -> dict[str, Any]:
        data = await wire.body(request, AliasIn)
        async with db.write() as session:
            await aliases.delete_alias(
                session,
                model_name=wire.require(data.name, "name"),
                alias=wire.require(data.alias, "alias"),
                actor=actor,
                protected=protected(settings),
                reason="deleted through the MLflow API",
            )
        return {}

    @post("/registered-models/get-latest-versions", status_code=200)
    async def latest_versions(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        data = await wire.body(request, LatestIn)
        return await self._latest(db, wire.require(data.name, "name"), data.stages)

    @get("/registered-models/get-latest-versions")
    async def latest_versions_get(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        return await self._latest(db, wire.query(request, "name"), request.query_params.getall("stages", []))

    async def _latest(self, db: Database, name: str, stages: list[str]) -> dict[str, Any]:
        async with db.read() as session:
            model = await models.get(session, name=name)
            found = await versions.latest_by_stage(session, model=model, stages=stages or None)
        return {"model_versions": [wire.version_json(model.name, v) for v in found]} if found else {}

    @post("/model-versions/create", guards=WRITER, status_code=200)
    async def create_version(self, request: Request[Any, Any, Any], db: Database, actor: Actor) -> dict[str, Any]:
        data = await wire.body(request, VersionIn)
        name, source = wire.require(data.name, "name"), wire.require(data.source, "source")
        run_id, path = resolve_source(source, data.run_id or None)
        tags = {t.key: t.value or "" for t in data.tags}
        async with db.write() as session:
            version = await versions.create(
                session,
                model_name=name,
                actor=actor,
                run_id=run_id,
                path=path,
                source=source,
                description=data.description,
                tags=tags,
            )
            # Answered from what is in hand: no extra queries while the model's row lock is held, and a
            # brand-new version holds no alias yet.
            payload = wire.version_json(name, version, tags=tags)
        return {"model_version": payload}

    @get("/model-versions/get")
    async def get_version(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        async with db.read(short=True) as session:
            payload = await version_by_name(
                session, wire.query(request, "name"), _version(wire.query(request, "version"))
            )
        return {"model_version": payload}

    @get("/model-versions/get-download-uri")
    async def download_uri(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        async with db.read(short=True) as session:  # the row only: its manifest is not needed here
            model = await models.get(session, name=wire.query(request, "name"))
            version = await versions.get(session, model=model, version=_version(wire.query(request, "version")))
        return {"artifact_uri": version_uri(model.id, version.version)}

    @get("/model-versions/search")
    async def search_versions(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        async with db.read() as session:
            found, token = await search.search_versions(
                session,
                filter=wire.query(request, "filter", required=False),
                order_by=request.query_params.getall("order_by", []) or None,
                max_results=wire.query_int(request, "max_results", 10_000),
                page_token=request.query_params.get("page_token") or None,
            )
            tags = await versions.tags_for(session, version_ids=[row.id for row in found])
        result: dict[str, Any] = {"model_versions": wire.version_rows_json(found, tags)}
        if token:
            result["next_page_token"] = token
        return result

    @post("/model-versions/set-tag", guards=WRITER, status_code=200)
    async def set_version_tag(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        data = await wire.body(request, TagIn)
        async with db.write() as session:
            view = await versions.view(
                session, model_name=wire.require(data.name, "name"), version=_version(data.version)
            )
            await versions.set_tags(
                session, version=view.version, tags={wire.require(data.key, "key"): data.value or ""}
            )
        return {}

    @delete("/model-versions/delete-tag", guards=WRITER, status_code=200)
    async def delete_version_tag(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        data = await wire.body(request, TagIn)
        async with db.write() as session:
            view = await versions.view(
                session, model_name=wire.require(data.name, "name"), version=_version(data.version)
            )
            await versions.delete_tag(session, version=view.version, key=wire.require(data.key, "key"))
        return {}

    @post("/model-versions/transition-stage", guards=WRITER, status_code=200)
    async def transition_stage(
        self, request: Request[Any, Any, Any], db: Database, actor: Actor, settings: Settings
    ) -> dict[str, Any]:
        """Stages are the aliases of the same name: Production moves ``production`` under its protection and
        gate policy, recorded in the promotion history (see docs/mlflow.md)."""
        data = await wire.body(request, VersionRef)
        name = wire.require(data.name, "name")
        async with db.write() as session:
            version = await versions.transition_stage(
                session,
                model_name=name,
                version=_version(data.version),
                stage=wire.require(data.stage, "stage"),
                actor=actor,
                protected=protected(settings),
                archive_existing=data.archive_existing_versions,
            )
            return {"model_version": await version_by_name(session, name, version.version)}

    @patch("/model-versions/update", guards=WRITER, status_code=200)
    async def update_version(self, request: Request[Any, Any, Any], db: Database, actor: Actor) -> dict[str, Any]:
        data = await wire.body(request, VersionRef)
        name = wire.require(data.name, "name")
        async with db.write() as session:
            version = await versions.update(
                session, model_name=name, version=_version(data.version), actor=actor, description=data.description
            )
            return {"model_version": await version_by_name(session, name, version.version)}

    @delete("/model-versions/delete", guards=WRITER, status_code=200)
    async def delete_version(
        self, request: Request[Any, Any, Any], db: Database, actor: Actor, settings: Settings
    ) -> dict[str, Any]:
        data = await wire.body(request, VersionRef)
        async with db.write() as session:
            await versions.delete_version(
                session,
                model_name=wire.require(data.name, "name"),
                version=_version(data.version),
                actor=actor,
                protected=protected(settings),
            )
        return {}
