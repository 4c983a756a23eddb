"""Registered models, versions, aliases and promotion history."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, delete, get, patch, post, put

from registry.api.security import WRITER
from registry.api.v1._common import Int64, NonNegativeInt64, Page, clamp_limit, int64_or_none, iso
from registry.api.v1.artifacts import FileOut
from registry.db import Database, Session
from registry.domain.models import ModelVersion, Promotion, RegisteredModel
from registry.errors import InvalidInput, NotFound
from registry.services import aliases, gates, models, versions
from registry.services.artifacts import ManifestEntry
from registry.services.auth import Actor
from registry.settings import Settings


class ModelIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    description: str | None = None
    tags: dict[str, str] = {}


class ModelPatch(msgspec.Struct, forbid_unknown_fields=True):
    description: str | None = None


class AliasOut(msgspec.Struct):
    alias: str
    version: int
    updated_by: str
    updated_at: str | None


class ModelOut(msgspec.Struct):
    name: str
    description: str | None
    latest_version: int
    created_by: str
    created_at: str | None
    updated_at: str | None
    tags: dict[str, str] = {}
    aliases: list[AliasOut] = []


class VersionIn(msgspec.Struct, forbid_unknown_fields=True):
    run_id: str | None = None
    path: str | None = None
    """Folder (or file) in the run's artifacts to snapshot."""
    files: list[FileOut] | None = None
    """Or: the files, already uploaded as blobs."""
    source: str | None = None
    description: str | None = None
    tags: dict[str, str] = {}


class PromotionOut(msgspec.Struct):
    id: int
    alias: str
    from_version: int | None
    to_version: int | None
    action: str
    actor: str
    reason: str | None
    forced: bool
    created_at: str | None
    gate_run_id: int | None = None


class GateRunSummary(msgspec.Struct):
    id: int
    verdict: str
    spec_digest: str
    baseline_version: int | None
    reveal: int
    commit_sha: str | None
    actor: str
    created_at: str | None


class VersionOut(msgspec.Struct):
    model: str
    version: int
    run_id: str | None
    source: str
    status: str
    description: str | None
    digest: str
    created_by: str
    created_at: str | None
    aliases: list[str] = []
    tags: dict[str, str] = {}
    files: list[FileOut] = []
    promotions: list[PromotionOut] = []
    gate_runs: list[GateRunSummary] = []


class VersionListItem(msgspec.Struct):
    """A version in a list: its aliases and file count, not its manifest (``GET .../versions/{n}`` has that),
    so a page of a thousand versions stays small."""

    model: str
    version: int
    run_id: str | None
    source: str
    status: str
    description: str | None
    digest: str
    created_by: str
    created_at: str | None
    aliases: list[str]
    file_count: int


class AliasIn(msgspec.Struct, forbid_unknown_fields=True):
    version: Int64
    reason: str | None = None
    expect: NonNegativeInt64 | None = None
    """Compare-and-swap: the version you believe the alias holds now (0 = it must not exist yet)."""
    force: bool = False
    """Move past a gate policy (maintainers only; needs a reason; audited)."""


class RollbackIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: str | None = None


def render_promotion(p: Promotion) -> PromotionOut:
    return PromotionOut(
        id=p.id,
        alias=p.alias,
        from_version=p.from_version,
        to_version=p.to_version,
        action=p.action,
        actor=p.actor,
        reason=p.reason,
        forced=p.forced,
        created_at=iso(p.created_at),
        gate_run_id=p.gate_run_id,
    )


def protected(settings: Settings) -> frozenset[str]:
    return frozenset(name.lower() for name in settings.protected_aliases)


def version_number(model_name: str, number: int) -> int:
    """A version number from a path: one no BIGINT can hold names no version (404, not a driver overflow)."""
    if int64_or_none(number) is None:
        raise NotFound(f"model {model_name!r} has no version {number}")
    return number


def _cursor(after: int) -> int:
    if int64_or_none(after) is None:
        raise InvalidInput(f"after must be a version number, got {after}", field="after")
    return after


def _list_item(model_name: str, v: ModelVersion, held: list[str], file_count: int) -> VersionListItem:
    return VersionListItem(
        model=model_name,
        version=v.version,
        run_id=v.run_id,
        source=v.source,
        status=v.status,
        description=v.description,
        digest=v.digest,
        created_by=v.created_by,
        created_at=iso(v.created_at),
        aliases=held,
        file_count=file_count,
    )


async def _render_model(session: Session, model: RegisteredModel) -> ModelOut:
    held = await aliases.list_for_model(session, model_id=model.id)
    return ModelOut(
        name=model.name,
        description=model.description,
        latest_version=model.last_version,
        created_by=model.created_by,
        created_at=iso(model.created_at),
        updated_at=iso(model.updated_at),
        tags=await models.tags_of(session, model_id=model.id),
        aliases=[
            AliasOut(alias=a.name, version=a.version, updated_by=a.updated_by, updated_at=iso(a.updated_at))
            for a in held
        ],
    )


async def _render_version(session: Session, model_name: str, number: int) -> VersionOut:
    view = await versions.view(session, model_name=model_name, version=number)
    v = view.version
    history = await aliases.history(session, model_name=model_name, version=number)
    return VersionOut(
        model=view.model.name,
        version=v.version,
        run_id=v.run_id,
        source=v.source,
        status=v.status,
        description=v.description,
        digest=v.digest,
        created_by=v.created_by,
        created_at=iso(v.created_at),
        aliases=view.aliases,
        tags=view.tags,
        files=[FileOut(path=f.path, sha256=f.sha256, size=f.size) for f in view.files],
        promotions=[render_promotion(p) for p in history],
        gate_runs=[
            GateRunSummary(
                id=r.id,
                verdict=r.verdict,
                spec_digest=r.spec_digest,
                baseline_version=r.baseline_version,
                reveal=r.reveal,
                commit_sha=r.commit_sha,
                actor=r.actor,
                created_at=iso(r.created_at),
            )
            for r in await gates.list_runs(session, model=view.model, version=number)
        ],
    )


class ModelsController(Controller):
    path = "/models"

    @post("/", guards=WRITER, status_code=201)
    async def create_model(self, data: ModelIn, db: Database, actor: Actor) -> ModelOut:
        async with db.write() as session:
            model = await models.create(
                session, name=data.name, actor=actor, description=data.description, tags=data.tags
            )
            return await _render_model(session, model)

    @get("/")
    async def list_models(self, db: Database, after: str | None = None, limit: int = 100) -> Page[ModelOut]:
        async with db.read() as session:
            rows = await models.list_models(session, limit=clamp_limit(limit), after=after)
            items = [await _render_model(session, m) for m in rows]
        return Page(items=items, next=items[-1].name if len(items) == limit else None)

    @get("/{name:str}")
    async def get_model(self, name: str, db: Database) -> ModelOut:
        async with db.read(short=True) as session:
            return await _render_model(session, await models.get(session, name=name))

    @patch("/{name:str}", guards=WRITER)
    async def update_model(self, name: str, data: ModelPatch, db: Database, actor: Actor) -> ModelOut:
        async with db.write() as session:
            model = await models.update(session, name=name, actor=actor, description=data.description)
            return await _render_model(session, model)

    @post("/{name:str}/versions", guards=WRITER, status_code=201)
    async def create_version(self, name: str, data: VersionIn, db: Database, actor: Actor) -> VersionOut:
        entries = [ManifestEntry(path=f.path, sha256=f.sha256, size=f.size) for f in data.files] if data.files else None
        async with db.write() as session:
            version = await versions.create(
                session,
                model_name=name,
                actor=actor,
                run_id=data.run_id,
                path=data.path,
                entries=entries,
                source=data.source,
                description=data.description,
                tags=data.tags,
            )
            return await _render_version(session, name, version.version)

    @get("/{name:str}/versions")
    async def list_versions(
        self, name: str, db: Database, after: int = 0, limit: int = 100, order: str = "asc"
    ) -> Page[VersionListItem]:
        """Versions with the aliases each holds and its file count; the manifest is on the version itself."""
        async with db.read() as session:
            rows = await versions.list_with_aliases(
                session, model_name=name, limit=clamp_limit(limit), after=_cursor(after), descending=order == "desc"
            )
            items = [_list_item(name, r.version, r.aliases, r.file_count) for r in rows]
        return Page(items=items, next=str(items[-1].version) if len(items) == limit else None)

    @get("/{name:str}/versions/{version:int}")
    async def get_version(self, name: str, version: int, db: Database) -> VersionOut:
        async with db.read() as session:
            return await _render_version(session, name, version_number(name, version))

    @delete("/{name:str}/versions/{version:int}", guards=WRITER, status_code=200)
    async def delete_version(
        self, name: str, version: int, db: Database, actor: Actor, settings: Settings
    ) -> dict[str, Any]:
        async with db.write() as session:
            await versions.delete_version(
                session,
                model_name=name,
                version=version_number(name, version),
                actor=actor,
                protected=protected(settings),
            )
        return {"model": name, "version": version, "deleted": True}

    @get("/{name:str}/aliases/{alias:str}")
    async def get_alias(self, name: str, alias: str, db: Database) -> VersionOut:
        async with db.read() as session:
            _, version = await aliases.resolve(session, model_name=name, alias=alias)
            return await _render_version(session, name, version.version)

    @put("/{name:str}/aliases/{alias:str}", guards=WRITER, status_code=200)
    async def set_alias(
        self, name: str, alias: str, data: AliasIn, db: Database, actor: Actor, settings: Settings
    ) -> PromotionOut | dict[str, Any]:
        expect: int | aliases._Unset | None = aliases.UNSET
        if data.expect is not None:
            expect = None if data.expect == 0 else data.expect
        async with db.write() as session:
            move = await aliases.set_alias(
                session,
                model_name=name,
                alias=alias,
                version=data.version,
                actor=actor,
                protected=protected(settings),
                reason=data.reason,
                expect=expect,
                force=data.force,
            )
        if move.promotion is None:
            return {"alias": move.alias, "to_version": data.version, "changed": False}
        return render_promotion(move.promotion)

    @delete("/{name:str}/aliases/{alias:str}", guards=WRITER, status_code=200)
    async def delete_alias(
        self, name: str, alias: str, db: Database, actor: Actor, settings: Settings, reason: str | None = None
    ) -> PromotionOut:
        async with db.write() as session:
            promotion = await aliases.delete_alias(
                session,
                model_name=name,
                alias=alias,
                actor=actor,
                protected=protected(settings),
                reason=reason,
            )
        return render_promotion(promotion)

    @post("/{name:str}/aliases/{alias:str}/rollback", guards=WRITER, status_code=200)
    async def rollback(
        self, name: str, alias: str, data: RollbackIn, db: Database, actor: Actor, settings: Settings
    ) -> PromotionOut:
        async with db.write() as session:
            move = await aliases.rollback(
                session,
                model_name=name,
                alias=alias,
                actor=actor,
                protected=protected(settings),
                reason=data.reason,
            )
        assert move.promotion is not None
        return render_promotion(move.promotion)

    @get("/{name:str}/promotions")
    async def promotions(
        self, name: str, db: Database, alias: str | None = None, limit: int = 100
    ) -> list[PromotionOut]:
        async with db.read() as session:
            rows = await aliases.history(session, model_name=name, alias=alias, limit=clamp_limit(limit))
        return [render_promotion(p) for p in rows]
