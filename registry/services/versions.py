"""Model versions: gapless numbering per model, immutable manifest snapshots, tags, deletion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, cast

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CompoundSelect,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.base import utcnow
from registry.domain.models import Alias, ModelVersion, RegisteredModel, VersionFile, VersionTag
from registry.errors import InvalidInput, NotFound
from registry.services import aliases, artifacts, events, models, names, runs
from registry.services._sql import dialect, put_tags
from registry.services.artifacts import ManifestEntry
from registry.services.auth import Actor


@dataclass(frozen=True, slots=True)
class Listed:
    """A version as lists show it: the row, the aliases it holds and how many files it has (no manifest)."""

    version: ModelVersion
    aliases: list[str]
    file_count: int


@dataclass(slots=True)
class VersionView:
    model: RegisteredModel
    version: ModelVersion
    files: list[ManifestEntry] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


_VERSIONS = cast(Table, ModelVersion.__table__)
_INSERT_VERSION: Final = insert(_VERSIONS).returning(_VERSIONS.c.id)
_INSERT_FILES: Final = insert(cast(Table, VersionFile.__table__))
"""Core statements, built once: registering a version is every pipeline's hot write."""
_FILES = cast(Table, VersionFile.__table__)
_VERSION_COLUMNS = (
    "model_id", "version", "run_id", "source", "status", "stage", "description", "digest", "created_by", "created_at",
    "updated_at",
)  # fmt: skip
_NEW_VERSION = (
    insert(_VERSIONS)
    .values({name: bindparam(f"v_{name}", type_=_VERSIONS.c[name].type) for name in _VERSION_COLUMNS})
    .returning(_VERSIONS.c.id)
    .cte("new_version")
)
_FILES_IN = (
    func.unnest(
        bindparam("v_paths", type_=ARRAY(String)),
        bindparam("v_digests", type_=ARRAY(String)),
        bindparam("v_sizes", type_=ARRAY(BigInteger)),
    )
    .table_valued("path", "sha256", "size")
    .render_derived(name="files_in")
)
_NEW_FILES = (
    insert(_FILES)
    .from_select(
        ["version_id", "path", "sha256", "size"],
        select(_NEW_VERSION.c.id, _FILES_IN.c.path, _FILES_IN.c.sha256, _FILES_IN.c.size).select_from(
            _NEW_VERSION.join(_FILES_IN, true())
        ),
    )
    .cte("new_files")
)
_CREATE_PG: Final = events.record_pg_with(
    _NEW_VERSION, _NEW_FILES, returning=[select(_NEW_VERSION.c.id).scalar_subquery()]
)
"""PostgreSQL: the version row, its files (``unnest`` of three arrays) and its event in one statement."""


async def create(
    session: AsyncSession,
    *,
    model_name: str,
    actor: Actor,
    run_id: str | None = None,
    path: str | None = None,
    entries: list[ManifestEntry] | None = None,
    source: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
) -> ModelVersion:
    """Register the next version of ``model_name``.

    Files come from the run's artifact folder ``path`` (snapshotted now: later uploads to the run do not
    change the version) or from an explicit manifest of already-uploaded blobs. Numbers are 1, 2, 3 ... per
    model with no gaps under concurrency: the model row is locked and its counter bumped in this transaction.
    """
    if entries is None and run_id is None:
        raise InvalidInput("give a run (run_id and path) or the files of the version", field="files")
    if entries is None:
        assert run_id is not None
        # The run's files reference stored blobs of checked sizes already; only gc's race needs guarding.
        entries = await artifacts.run_manifest(session, run_id=run_id, path=path or "")
        await artifacts.keep_blobs(session, digests=(e.sha256 for e in entries))
    else:
        if run_id is not None:
            await runs.get(session, run_id=run_id)
        entries = await artifacts.check_manifest(session, entries=entries)
    model_id, number = await models.next_version(session, name=model_name)
    now = utcnow()
    values = {
        "model_id": model_id,
        "version": number,
        "run_id": run_id,
        "source": source or (f"runs:/{run_id}/{path or ''}".rstrip("/") if run_id else "upload"),
        "status": "READY",
        "stage": "None",
        "description": description,
        "digest": artifacts.manifest_digest(entries),
        "created_by": actor.name,
        "created_at": now,
        "updated_at": now,
    }
    # Core, not the unit of work: the row is written once and never changed in this transaction. The
    # caller gets a detached object with the same values.
    event: dict[str, Any] = {
        "type": "model_version.created",
        "subject": f"models/{model_name}/versions/{number}",
        "actor": actor.name,
        "model": model_name,
    }
    data = {
        "model": model_name,
        "version": number,
        "run_id": run_id,
        "digest": values["digest"],
        "source": values["source"],
    }
    if dialect(session) == "postgresql" and not tags:
        # The version, its files and its event in one statement: one round trip instead of three inside the
        # model's critical section (the counter's row lock is held from next_version to the commit).
        params: dict[str, Any] = {f"v_{name}": value for name, value in values.items()}
        params.update(
            events.pg_params(events.event_values(**event, data=data)),
            v_paths=[e.path for e in entries],
            v_digests=[e.sha256 for e in entries],
            v_sizes=[e.size for e in entries],
        )
        _seq, version_id = (await session.execute(_CREATE_PG, params)).one()
        events.recorded(session)
        return ModelVersion(id=version_id, **values)
    version_id = (await session.execute(_INSERT_VERSION, values)).scalar_one()
    version = ModelVersion(id=version_id, **values)
    await session.execute(
        _INSERT_FILES, [{"version_id": version_id, "path": e.path, "sha256": e.sha256, "size": e.size} for e in entries]
    )
    if tags:
        await set_tags(session, version=version, tags=tags)
    await events.record(session, **event, data=data)
    return version


async def get(session: AsyncSession, *, model: RegisteredModel, version: int) -> ModelVersion:
    found = await session.scalar(
        select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == version)
    )
    if found is None:
        raise NotFound(f"model {model.name!r} has no version {version}")
    return found


async def view(session: AsyncSession, *, model_name: str, version: int) -> VersionView:
    model = await models.get(session, name=model_name)
    found = await get(session, model=model, version=version)
    tags, held = await labels(session, version=found)
    return VersionView(
        model=model, version=found, files=await files_of(session, version_id=found.id), tags=tags, aliases=held
    )


async def list_versions(
    session: AsyncSession, *, model_name: str, limit: int = 100, after: int = 0, descending: bool = False
) -> tuple[RegisteredModel, list[ModelVersion]]:
    model = await models.get(session, name=model_name)
    query = select(ModelVersion).where(ModelVersion.model_id == model.id).limit(limit)
    if descending:
        query = query.order_by(ModelVersion.version.desc())
        if after:
            query = query.where(ModelVersion.version < after)
    else:
        query = query.order_by(ModelVersion.version).where(ModelVersion.version > after)
    return model, list(await session.scalars(query))


async def list_with_aliases(
    session: AsyncSession, *, model_name: str, limit: int = 100, after: int = 0, descending: bool = False
) -> list[Listed]:
    """A page of versions with their aliases and file counts: three queries, whatever the page size."""
    model, rows = await list_versions(session, model_name=model_name, limit=limit, after=after, descending=descending)
    numbers = [v.version for v in rows]
    held: dict[int, list[str]] = {}
    if numbers:
        found = await session.execute(
            select(Alias.version, Alias.name)
            .where(Alias.model_id == model.id, Alias.version.in_(numbers))
            .order_by(Alias.name)
        )
        for number, name in found.all():
            held.setdefault(number, []).append(name)
    counts: dict[int, int] = {}
    if rows:
        found = await session.execute(
            select(VersionFile.version_id, func.count())
            .where(VersionFile.version_id.in_([v.id for v in rows]))
            .group_by(VersionFile.version_id)
        )
        counts = {version_id: int(count) for version_id, count in found.all()}
    return [Listed(version=v, aliases=held.get(v.version, []), file_count=counts.get(v.id, 0)) for v in rows]


async def files_of(session: AsyncSession, *, version_id: int) -> list[ManifestEntry]:
    rows = await session.scalars(
        select(VersionFile).where(VersionFile.version_id == version_id).order_by(VersionFile.path)
    )
    return [ManifestEntry(path=f.path, sha256=f.sha256, size=f.size) for f in rows]


_LABELS: Final[CompoundSelect[str, str, str]] = union_all(
    select(
        literal_column("'t'", String).label("kind"), VersionTag.key.label("name"), VersionTag.value.label("value")
    ).where(VersionTag.version_id == bindparam("version_id")),
    select(literal_column("'a'", String), Alias.name, literal_column("NULL", String)).where(
        Alias.model_id == bindparam("model_id"), Alias.version == bindparam("version")
    ),
).order_by("kind", "name")


async def labels(session: AsyncSession, *, version: ModelVersion) -> tuple[dict[str, str], list[str]]:
    """The version's tags and the names of the aliases it holds (by name), in one query."""
    rows = await session.execute(
        _LABELS, {"version_id": version.id, "model_id": version.model_id, "version": version.version}
    )
    tags: dict[str, str] = {}
    held: list[str] = []
    for kind, name, value in rows:
        if kind == "t":
            tags[name] = value
        else:
            held.append(name)
    return tags, held


async def tags_of(session: AsyncSession, *, version_id: int) -> dict[str, str]:
    rows = await session.execute(select(VersionTag.key, VersionTag.value).where(VersionTag.version_id == version_id))
    return dict(rows.all())


async def set_tags(session: AsyncSession, *, version: ModelVersion, tags: dict[str, str]) -> None:
    for key in tags:
        names.key(key, what="tag key")
    await put_tags(session, VersionTag.__table__, "version_id", version.id, tags)


async def delete_version(
    session: AsyncSession, *, model_name: str, version: int, actor: Actor, protected: frozenset[str]
) -> None:
    """Delete a version. Aliases pointing at it are removed (recorded as promotions); its number is never
    reused. Removing a protected alias this way needs the same role as moving it."""
    model = await models.lock(session, name=model_name)
    found = await get(session, model=model, version=version)
    held = await session.scalars(select(Alias).where(Alias.model_id == model.id, Alias.version == version))
    for alias in list(held):
        await aliases.remove(
            session,
            model=model,
            alias=alias.name,
            actor=actor,
            protected=protected,
            reason=f"version {version} deleted",
        )
    await session.execute(delete(ModelVersion).where(ModelVersion.id == found.id))
    await events.record(
        session,
        type="model_version.deleted",
        subject=f"models/{model.name}/versions/{version}",
        actor=actor.name,
        model=model.name,
        data={"model": model.name, "version": version},
    )


STAGES = ("None", "Staging", "Production", "Archived")


def canonical_stage(value: str) -> str:
    """MLflow's legacy stages, matched case-insensitively."""
    for stage in STAGES:
        if stage.lower() == (value or "").lower():
            return stage
    raise InvalidInput(f"invalid stage {value!r}: use one of {', '.join(STAGES)}", field="stage")


async def transition_stage(
    session: AsyncSession,
    *,
    model_name: str,
    version: int,
    stage: str,
    actor: Actor,
    protected: frozenset[str],
    archive_existing: bool = False,
) -> ModelVersion:
    """Move ``version`` to one of MLflow's legacy stages, which are the aliases of the same name.

    ``Production``/``Staging`` point the ``production``/``staging`` alias at the version through
    ``aliases.set_alias`` (role, gate policy, promotion history, audit, ``alias.moved`` event); the previous
    holder leaves the stage, as ``Archived`` with ``archive_existing`` and ``None`` without (an alias has one
    holder, so it cannot stay). A version has one stage, so it also gives up the other stage alias if it
    holds it. ``Archived``/``None`` make the version give up the stage aliases it holds (recorded as removals,
    with the same protection). Raises what ``set_alias`` and ``remove`` raise.
    """
    stage = canonical_stage(stage)
    model = await models.lock(session, name=model_name)
    found = await get(session, model=model, version=version)
    before = found.stage
    reason = f"MLflow stage transition to {stage}"
    target = stage.lower() if stage.lower() in aliases.STAGE_ALIASES else None
    if target is not None:
        await aliases.set_alias(
            session,
            model_name=model.name,
            alias=target,
            version=version,
            actor=actor,
            protected=protected,
            reason=reason,
            left_stage="Archived" if archive_existing else "None",
        )
    for held in await aliases.names_for(session, model_id=model.id, version=version):
        if held in aliases.STAGE_ALIASES and held != target:
            await aliases.remove(
                session, model=model, alias=held, actor=actor, protected=protected, reason=reason, left_stage=stage
            )
    if found.stage != stage:  # a version that held no stage alias: Archived and None are plain labels
        found.stage, found.updated_at = stage, utcnow()
    if found.stage == before:
        return found
    await events.record(
        session,
        type="model_version.stage_changed",
        subject=f"models/{model.name}/versions/{version}",
        actor=actor.name,
        model=model.name,
        data={"model": model.name, "version": version, "from_stage": before, "to_stage": stage},
    )
    await session.flush()
    return found


async def latest_by_stage(
    session: AsyncSession, *, model: RegisteredModel, stages: list[str] | None = None
) -> list[ModelVersion]:
    """The newest version in each requested stage (every stage, ``None`` included, when none is asked)."""
    wanted = [canonical_stage(s) for s in stages] if stages else list(STAGES)
    newest = (
        select(ModelVersion.stage, func.max(ModelVersion.version).label("version"))
        .where(ModelVersion.model_id == model.id, ModelVersion.stage.in_(wanted))
        .group_by(ModelVersion.stage)
        .subquery()
    )
    rows = await session.scalars(
        select(ModelVersion)
        .join(newest, (ModelVersion.stage == newest.c.stage) & (ModelVersion.version == newest.c.version))
        .where(ModelVersion.model_id == model.id)
        .order_by(ModelVersion.version)
    )
    return list(rows)


async def update(
    session: AsyncSession, *, model_name: str, version: int, actor: Actor, description: str | None
) -> ModelVersion:
    model = await models.lock(session, name=model_name)
    found = await get(session, model=model, version=version)
    found.description, found.updated_at = description, utcnow()
    await events.record(
        session,
        type="model_version.updated",
        subject=f"models/{model.name}/versions/{version}",
        actor=actor.name,
        model=model.name,
        data={"model": model.name, "version": version, "description": description},
    )
    await session.flush()
    return found


async def delete_tag(session: AsyncSession, *, version: ModelVersion, key: str) -> None:
    await session.execute(delete(VersionTag).where(VersionTag.version_id == version.id, VersionTag.key == key))


async def by_model_id(session: AsyncSession, *, model_id: int, version: int) -> tuple[RegisteredModel, ModelVersion]:
    model = await session.get(RegisteredModel, model_id)
    if model is None:
        raise NotFound(f"model {model_id} does not exist")
    return model, await get(session, model=model, version=version)


async def tags_for(session: AsyncSession, *, version_ids: list[int]) -> dict[int, dict[str, str]]:
    """Tags of many versions in one query (searches render hundreds of versions)."""
    found: dict[int, dict[str, str]] = {}
    if not version_ids:
        return found
    rows = await (await session.connection()).execute(
        select(VersionTag.version_id, VersionTag.key, VersionTag.value).where(VersionTag.version_id.in_(version_ids))
    )
    for version_id, key, value in rows.all():
        found.setdefault(version_id, {})[key] = value
    return found
