"""Registered models: create, find, list, describe."""

from __future__ import annotations

from typing import Final, cast

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.base import utcnow
from registry.domain.models import ModelTag, RegisteredModel
from registry.errors import AlreadyExists, NotFound
from registry.services import events, names
from registry.services._sql import put_tags
from registry.services.auth import Actor


def missing(name: str) -> NotFound:
    return NotFound(f"model {name!r} does not exist (see `registry models list`)")


async def create(
    session: AsyncSession,
    *,
    name: str,
    actor: Actor,
    description: str | None = None,
    tags: dict[str, str] | None = None,
) -> RegisteredModel:
    """Raises AlreadyExists when the name is taken (a concurrent create loses on the unique index)."""
    names.model_name(name)
    if await session.scalar(select(RegisteredModel.id).where(RegisteredModel.name == name)) is not None:
        raise AlreadyExists(f"model {name!r} already exists", field="name")
    model = RegisteredModel(name=name, description=description, created_by=actor.name)
    session.add(model)
    await session.flush()
    if tags:
        await set_tags(session, model=model, tags=tags)
    await events.record(
        session,
        type="model.created",
        subject=f"models/{name}",
        actor=actor.name,
        model=name,
        data={"name": name, "description": description},
    )
    return model


async def get(session: AsyncSession, *, name: str) -> RegisteredModel:
    model = await session.scalar(select(RegisteredModel).where(RegisteredModel.name == name))
    if model is None:
        raise missing(name)
    return model


async def lock(session: AsyncSession, *, name: str) -> RegisteredModel:
    """Load the model holding its row lock until commit. Every change to a model's versions or aliases
    takes it first, so those changes are serialised per model (SQLite's write lock does this already)."""
    model = await session.scalar(_LOCK, {"model_name": name})
    if model is None:
        raise missing(name)
    return model


_LOCK: Final = (
    select(RegisteredModel)
    .where(RegisteredModel.name == bindparam("model_name"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


_MODELS = cast(Table, RegisteredModel.__table__)
_NEXT_VERSION: Final = (
    sql_update(_MODELS)
    .where(_MODELS.c.name == bindparam("model_name"))
    .values(last_version=_MODELS.c.last_version + 1, updated_at=bindparam("now"))
    .returning(_MODELS.c.id, _MODELS.c.last_version)
)


async def next_version(session: AsyncSession, *, name: str) -> tuple[int, int]:
    """Hand out the model's next version number: ``(model id, number)``.

    One ``UPDATE … RETURNING``: the counter is bumped under the row lock the update takes (held until
    commit), so concurrent creates of the same model queue here and numbers stay gapless; no read first."""
    row = (await session.execute(_NEXT_VERSION, {"model_name": name, "now": utcnow()})).one_or_none()
    if row is None:
        raise missing(name)
    return int(row[0]), int(row[1])


async def list_models(session: AsyncSession, *, limit: int = 100, after: str | None = None) -> list[RegisteredModel]:
    query = select(RegisteredModel).order_by(RegisteredModel.name).limit(limit)
    if after is not None:
        query = query.where(RegisteredModel.name > after)
    return list(await session.scalars(query))


async def update(session: AsyncSession, *, name: str, actor: Actor, description: str | None) -> RegisteredModel:
    model = await lock(session, name=name)
    model.description = description
    model.updated_at = utcnow()
    await events.record(
        session,
        type="model.updated",
        subject=f"models/{name}",
        actor=actor.name,
        model=name,
        data={"name": name, "description": description},
    )
    await session.flush()
    return model


async def set_tags(session: AsyncSession, *, model: RegisteredModel, tags: dict[str, str]) -> None:
    for key in tags:
        names.key(key, what="tag key")
    await put_tags(session, ModelTag.__table__, "model_id", model.id, tags)


async def tags_of(session: AsyncSession, *, model_id: int) -> dict[str, str]:
    rows = await session.execute(select(ModelTag.key, ModelTag.value).where(ModelTag.model_id == model_id))
    return dict(rows.all())


async def delete_tag(session: AsyncSession, *, model: RegisteredModel, key: str) -> None:
    await session.execute(delete(ModelTag).where(ModelTag.model_id == model.id, ModelTag.key == key))
