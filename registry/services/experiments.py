"""Experiments: create, find, list."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.experiments import Experiment, ExperimentTag
from registry.errors import AlreadyExists, NotFound
from registry.services import events, names
from registry.services.auth import Actor

DEFAULT_EXPERIMENT_ID = 0


def _check_name(name: str) -> str:
    return names.label(name, what="experiment name", field="name")


async def create(
    session: AsyncSession,
    *,
    name: str,
    actor: Actor,
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
) -> Experiment:
    """Raises AlreadyExists when the name is taken."""
    _check_name(name)
    for key in tags or {}:
        names.key(key, what="tag key")
    if await session.scalar(select(Experiment.id).where(Experiment.name == name)) is not None:
        raise AlreadyExists(f"experiment {name!r} already exists", field="name")
    experiment = Experiment(name=name, artifact_location=artifact_location)
    session.add(experiment)
    await session.flush()
    for key, value in (tags or {}).items():
        session.add(ExperimentTag(experiment_id=experiment.id, key=key, value=value))
    await events.record(
        session,
        type="experiment.created",
        subject=f"experiments/{experiment.id}",
        actor=actor.name,
        data={"id": experiment.id, "name": name},
    )
    await session.flush()
    return experiment


async def get(session: AsyncSession, *, experiment_id: int) -> Experiment:
    experiment = await session.get(Experiment, experiment_id)
    if experiment is None:
        raise NotFound(f"experiment {experiment_id} does not exist")
    return experiment


async def get_by_name(session: AsyncSession, *, name: str) -> Experiment:
    experiment = await session.scalar(select(Experiment).where(Experiment.name == name))
    if experiment is None:
        raise NotFound(f"experiment {name!r} does not exist")
    return experiment


async def get_or_create(session: AsyncSession, *, name: str, actor: Actor) -> Experiment:
    experiment = await session.scalar(select(Experiment).where(Experiment.name == name))
    return experiment if experiment is not None else await create(session, name=name, actor=actor)


async def list_experiments(
    session: AsyncSession, *, limit: int = 100, after: int = -1, offset: int = 0
) -> list[Experiment]:
    query = select(Experiment).where(Experiment.id > after).order_by(Experiment.id).limit(limit).offset(offset)
    return list(await session.scalars(query))


async def tags_of(session: AsyncSession, *, experiment_id: int) -> dict[str, str]:
    rows = await session.execute(
        select(ExperimentTag.key, ExperimentTag.value).where(ExperimentTag.experiment_id == experiment_id)
    )
    return {k: v for k, v in rows.all()}
