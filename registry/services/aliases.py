"""Aliases (``staging``, ``production`` ...): compare-and-swap moves, protection, rollback, history.

Every move appends a ``Promotion`` row; the history is never edited. All moves of one model's aliases
hold that model's row lock, so "read current holder, compare, write" is atomic on both databases.

Alias names are lower case (``names.alias`` folds them), so protection and gate policies cannot be escaped
with a look-alike spelling. MLflow's legacy stages are the aliases of the same name: ``production`` and
``staging`` decide a version's ``stage`` column, which every move of those two aliases keeps in step in the
same transaction (MLflow's ``current_stage``, ``get-latest-versions`` and ``models:/name/Production`` read it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.domain.gates import GatePolicy
from registry.domain.models import Alias, ModelVersion, Promotion, RegisteredModel
from registry.errors import Conflict, InvalidInput, NotFound
from registry.services import audit, events, models, names
from registry.services.auth import Actor, require


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
"""``expect=UNSET``: no compare-and-swap. ``expect=None``: the alias must not exist yet."""

STAGE_ALIASES: Final = {"production": "Production", "staging": "Staging"}
"""MLflow's stages and the aliases that hold them; a version holding both is in Production."""


@dataclass(frozen=True, slots=True)
class Move:
    promotion: Promotion | None
    """None when the alias already pointed at the requested version (nothing changed)."""
    alias: str
    version: int


async def get(session: AsyncSession, *, model: RegisteredModel, alias: str) -> Alias:
    """Raises InvalidInput for a malformed name, NotFound when the model has no such alias."""
    alias = names.alias(alias)
    found = await session.get(Alias, (model.id, alias))
    if found is None:
        raise NotFound(f"model {model.name!r} has no alias {alias!r}", code="alias_not_found")
    return found


_RESOLVE: Final = (
    select(RegisteredModel, ModelVersion)
    .join(Alias, Alias.model_id == RegisteredModel.id)
    .join(ModelVersion, and_(ModelVersion.model_id == Alias.model_id, ModelVersion.version == Alias.version))
    .where(RegisteredModel.name == bindparam("model"), Alias.name == bindparam("alias"))
)
"""Built once: a hot read (every ``models:/name@alias`` load), and its cache key is then computed once too."""


async def resolve(session: AsyncSession, *, model_name: str, alias: str) -> tuple[RegisteredModel, ModelVersion]:
    """The model and the version its ``alias`` points to (one query; NotFound says which part is missing)."""
    from registry.services import versions

    alias = names.alias(alias)
    found = (await session.execute(_RESOLVE, {"model": model_name, "alias": alias})).first()
    if found is not None:
        return found[0], found[1]
    model = await models.get(session, name=model_name)
    holder = await get(session, model=model, alias=alias)
    return model, await versions.get(session, model=model, version=holder.version)


async def names_for(session: AsyncSession, *, model_id: int, version: int) -> list[str]:
    rows = await session.scalars(
        select(Alias.name).where(Alias.model_id == model_id, Alias.version == version).order_by(Alias.name)
    )
    return list(rows)


async def list_for_model(session: AsyncSession, *, model_id: int) -> list[Alias]:
    return list(await session.scalars(select(Alias).where(Alias.model_id == model_id).order_by(Alias.name)))


async def list_for_models(session: AsyncSession, *, model_ids: list[int]) -> dict[int, list[Alias]]:
    """The aliases of several models in one query, by model id (each list by alias name)."""
    found: dict[int, list[Alias]] = {model_id: [] for model_id in model_ids}
    if model_ids:
        query = select(Alias).where(Alias.model_id.in_(model_ids)).order_by(Alias.model_id, Alias.name)
        for alias in await session.scalars(query):
            found[alias.model_id].append(alias)
    return found


async def last_promotions(session: AsyncSession, *, model_ids: list[int]) -> dict[int, Promotion]:
    """The newest promotion row of each of several models that has one, in one query, by model id."""
    if not model_ids:
        return {}
    newest = select(func.max(Promotion.id)).where(Promotion.model_id.in_(model_ids)).group_by(Promotion.model_id)
    return {p.model_id: p for p in await session.scalars(select(Promotion).where(Promotion.id.in_(newest)))}


def _guard(actor: Actor, model: RegisteredModel, alias: str, protected: frozenset[str]) -> bool:
    # Settings may spell protected aliases in any case; the alias itself is already lower case.
    if alias in {p.lower() for p in protected}:
        require(actor, Role.maintainer, action=f"moving the protected alias {model.name}@{alias}")
        return True
    require(actor, Role.writer, action="moving an alias")
    return False


_PROMOTIONS = cast(Table, Promotion.__table__)
_INSERT_PROMOTION: Final = insert(_PROMOTIONS).returning(_PROMOTIONS.c.id)


async def _append(
    session: AsyncSession,
    *,
    model: RegisteredModel,
    alias: str,
    before: int | None,
    after: int | None,
    action: str,
    actor: Actor,
    reason: str | None,
    is_protected: bool,
    forced: bool = False,
    gate_run_id: int | None = None,
) -> Promotion:
    values = {
        "model_id": model.id,
        "alias": alias,
        "from_version": before,
        "to_version": after,
        "action": action,
        "actor": actor.name,
        "reason": reason,
        "forced": forced,
        "gate_run_id": gate_run_id,
        "created_at": utcnow(),
    }
    # Core, not the unit of work: history rows are written once. The caller gets a detached object.
    promotion = Promotion(id=(await session.execute(_INSERT_PROMOTION, values)).scalar_one(), **values)
    data = {
        "model": model.name,
        "alias": alias,
        "from_version": before,
        "to_version": after,
        "action": action,
        "actor": actor.name,
        "reason": reason,
        "forced": forced,
        "gate_run_id": gate_run_id,
        "promotion_id": promotion.id,
    }
    event_type = "alias.removed" if after is None else "alias.moved"
    await events.record(
        session,
        type=event_type,
        subject=f"models/{model.name}/aliases/{alias}",
        actor=actor.name,
        model=model.name,
        data=data,
    )
    if is_protected:
        # A forced move is security-relevant whatever the alias: it bypassed a gate policy.
        await audit.log(
            session,
            action="alias.forced" if forced else f"protected_{event_type}",
            actor=actor.name,
            target=f"{model.name}@{alias}",
            details=data,
        )
    return promotion


_ALIASES = cast(Table, Alias.__table__)
_BEFORE_MOVE: Final = select(
    select(ModelVersion.id)
    .where(ModelVersion.model_id == bindparam("model_id"), ModelVersion.version == bindparam("version"))
    .scalar_subquery(),
    select(_ALIASES.c.version)
    .where(_ALIASES.c.model_id == bindparam("model_id"), _ALIASES.c.name == bindparam("alias"))
    .scalar_subquery(),
    select(GatePolicy.id)
    .where(GatePolicy.model_id == bindparam("model_id"), GatePolicy.alias == bindparam("alias"))
    .scalar_subquery(),
)
_MOVE: Final = (
    update(_ALIASES)
    .where(_ALIASES.c.model_id == bindparam("of_model"), _ALIASES.c.name == bindparam("of_alias"))
    .values(version=bindparam("to"), updated_by=bindparam("by"), updated_at=bindparam("now"))
)
"""Built once: moving an alias is every promotion's write (and every rule's that promotes)."""


async def set_alias(
    session: AsyncSession,
    *,
    model_name: str,
    alias: str,
    version: int,
    actor: Actor,
    protected: frozenset[str],
    reason: str | None = None,
    expect: int | _Unset | None = UNSET,
    action: str = "promote",
    force: bool = False,
    enforce_gates: bool = True,
    left_stage: str = "None",
) -> Move:
    """Point ``alias`` at ``version``.

    For ``production`` and ``staging`` the versions' stages follow: ``version`` takes the stage, and the previous
    holder, unless it holds the other stage alias, is left in ``left_stage`` (MLflow's
    ``archive_existing_versions`` leaves it ``Archived``).

    Raises Forbidden (protected alias, role below maintainer; ``force`` needs maintainer), NotFound
    (model/version), PreconditionFailed when a gate policy on the alias is not met (unless ``force``, which
    needs a reason and is audited), Conflict when ``expect`` is given and the alias no longer holds it: of two
    racing moves with the same expectation, exactly one wins.
    """
    from registry.services import gates

    alias = names.alias(alias)
    model = await models.lock(session, name=model_name)
    is_protected = _guard(actor, model, alias, protected)
    if force:
        require(actor, Role.maintainer, action="forcing an alias past its gate policy")
        if not (reason or "").strip():
            raise InvalidInput("--force needs a --reason (it is kept in the promotion history)", field="reason")
    # The target version's existence, the alias's current version and whether a gate policy guards the
    # alias, in one round trip.
    target: dict[str, object] = {"model_id": model.id, "alias": alias, "version": version}
    exists_, before, guarded = (await session.execute(_BEFORE_MOVE, target)).one()
    if exists_ is None:
        raise NotFound(f"model {model.name!r} has no version {version}")
    if not isinstance(expect, _Unset) and expect != before:
        where = f"v{before}" if before is not None else "nothing"
        wanted = f"v{expect}" if expect is not None else "nothing"
        raise Conflict(
            f"{model.name}@{alias} points at {where}, not {wanted}: someone moved it; re-read and retry",
            code="alias_moved",
            current=before,
        )
    if before == version:
        return Move(promotion=None, alias=alias, version=version)
    passed = None
    if enforce_gates and not force and guarded is not None:
        passed = await gates.passing_run(session, model=model, alias=alias, version=version)
    if before is None:
        session.add(Alias(model_id=model.id, name=alias, version=version, updated_by=actor.name, updated_at=utcnow()))
    else:
        await session.execute(
            _MOVE, {"of_model": model.id, "of_alias": alias, "to": version, "by": actor.name, "now": utcnow()}
        )
        # A Core update leaves an Alias this session loaded earlier (rollback reads the holder) as it was.
        loaded = session.identity_map.get(session.identity_key(Alias, (model.id, alias)))
        if loaded is not None:
            session.expire(loaded)
    promotion = await _append(
        session,
        model=model,
        alias=alias,
        before=before,
        after=version,
        action=action,
        actor=actor,
        reason=reason,
        is_protected=is_protected or force,
        forced=force,
        gate_run_id=passed.id if passed is not None else None,
    )
    await _follow_stages(session, model=model, alias=alias, numbers=(before, version), left_stage=left_stage)
    return Move(promotion=promotion, alias=alias, version=version)


async def _follow_stages(
    session: AsyncSession,
    *,
    model: RegisteredModel,
    alias: str,
    numbers: tuple[int | None, ...],
    left_stage: str,
) -> None:
    """Keep the stage of the versions a move of ``alias`` touched in step with the stage aliases they hold."""
    if alias not in STAGE_ALIASES:
        return
    for number in sorted({n for n in numbers if n is not None}):
        row = await session.scalar(
            select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == number)
        )
        if row is None:
            continue
        held = set(await names_for(session, model_id=model.id, version=number))
        stage = next((s for a, s in STAGE_ALIASES.items() if a in held), None)
        if stage is None:
            # Only a version that was in a stage leaves it; ``Archived`` and ``None`` are labels of their own.
            stage = left_stage if row.stage in STAGE_ALIASES.values() else row.stage
        if row.stage != stage:
            row.stage, row.updated_at = stage, utcnow()


async def remove(
    session: AsyncSession,
    *,
    model: RegisteredModel,
    alias: str,
    actor: Actor,
    protected: frozenset[str],
    reason: str | None = None,
    left_stage: str = "None",
) -> Promotion:
    """Delete an alias (the caller holds the model lock). Raises NotFound if it does not exist. A version that
    gives up ``production`` or ``staging`` this way is left in ``left_stage`` unless it holds the other one."""
    alias = names.alias(alias)
    is_protected = _guard(actor, model, alias, protected)
    current = await get(session, model=model, alias=alias)
    before = current.version
    await session.delete(current)
    await _follow_stages(session, model=model, alias=alias, numbers=(before,), left_stage=left_stage)
    return await _append(
        session,
        model=model,
        alias=alias,
        before=before,
        after=None,
        action="remove",
        actor=actor,
        reason=reason,
        is_protected=is_protected,
    )


async def delete_alias(
    session: AsyncSession,
    *,
    model_name: str,
    alias: str,
    actor: Actor,
    protected: frozenset[str],
    reason: str | None = None,
) -> Promotion:
    model = await models.lock(session, name=model_name)
    return await remove(session, model=model, alias=alias, actor=actor, protected=protected, reason=reason)


async def rollback(
    session: AsyncSession,
    *,
    model_name: str,
    alias: str,
    actor: Actor,
    protected: frozenset[str],
    reason: str | None = None,
    expect: int | _Unset = UNSET,
) -> Move:
    """Move ``alias`` back to the version that held it before the current holder took it. With ``expect``, a
    compare-and-swap: Conflict (``alias_moved``) unless the alias still points at that version.

    Rollbacks stack: after v1 → v2 → v3, two rollbacks give v2 then v1 (a rollback's own row is skipped
    when looking for "the move that brought the current holder in").
    """
    alias = names.alias(alias)
    model = await models.lock(session, name=model_name)
    current = await get(session, model=model, alias=alias)
    if not isinstance(expect, _Unset) and current.version != expect:
        raise Conflict(
            f"{model.name}@{alias} points at v{current.version}, not v{expect}: someone moved it; re-read and retry",
            code="alias_moved",
            current=current.version,
        )
    arrival = await session.scalar(
        select(Promotion)
        .where(
            Promotion.model_id == model.id,
            _history_of(model.id, alias),
            Promotion.to_version == current.version,
            Promotion.action == "promote",
        )
        .order_by(Promotion.id.desc())
        .limit(1)
    )
    if arrival is None or arrival.from_version is None:
        raise Conflict(f"{model.name}@{alias} has no earlier holder to roll back to", code="no_previous_holder")
    target = arrival.from_version
    exists = await session.scalar(
        select(ModelVersion.id).where(ModelVersion.model_id == model.id, ModelVersion.version == target)
    )
    if exists is None:
        raise Conflict(
            f"the previous holder of {model.name}@{alias}, v{target}, was deleted",
            code="previous_holder_deleted",
        )
    return await set_alias(
        session,
        model_name=model_name,
        alias=alias,
        version=target,
        actor=actor,
        protected=protected,
        reason=reason or f"rollback from v{current.version}",
        expect=current.version,
        action="rollback",
        # A rollback returns the alias to a version that already held it; an emergency must not wait for a
        # fresh gate run. The move is still recorded and still needs the alias' role.
        enforce_gates=False,
    )


def _history_of(model_id: int, alias: str) -> ColumnElement[bool]:
    """Promotion rows of ``alias`` (lower case), whatever the spelling they were written with.

    Promotion rows are append-only, so rows written before names were folded keep their spelling
    (``Production``): they are the record of what was typed, and rewriting them would edit history. The
    spelling folds when matching instead. A spelling that was a look-alike of an existing alias was renamed
    when names were folded (migration 0006 appends a ``rename`` row for it, with no ``to_version``); its rows
    belong to the renamed alias, not to the one it resembled, so they are left out.
    """
    renamed_away = select(Promotion.alias).where(
        Promotion.model_id == model_id, Promotion.action == "rename", Promotion.to_version.is_(None)
    )
    return and_(func.lower(Promotion.alias) == alias, Promotion.alias.not_in(renamed_away))


async def history(
    session: AsyncSession,
    *,
    model_name: str,
    alias: str | None = None,
    version: int | None = None,
    limit: int = 100,
) -> list[Promotion]:
    """Promotions newest first, optionally for one alias or touching one version."""
    model = await models.get(session, name=model_name)
    query = select(Promotion).where(Promotion.model_id == model.id).order_by(Promotion.id.desc()).limit(limit)
    if alias is not None:
        query = query.where(_history_of(model.id, names.alias(alias)))
    if version is not None:
        query = query.where((Promotion.to_version == version) | (Promotion.from_version == version))
    return list(await session.scalars(query))
