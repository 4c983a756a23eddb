from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.auth import AuditEntry, Role
from registry.domain.events import Event
from registry.errors import Conflict, Forbidden, InvalidInput, NotFound
from registry.services import aliases, models, versions
from registry.services.auth import Actor
from tests.factories.models import create_model, create_version

PROTECTED = frozenset({"production"})
WRITER = Actor(name="wendy", role=Role.writer)
MAINTAINER = Actor(name="max", role=Role.maintainer)


async def _model_with_versions(session: AsyncSession, count: int) -> str:
    model = await create_model(session)
    for _ in range(count):
        await create_version(session, model=model)
    return model.name


async def test_promotion_history_records_who_what_when_why(session: AsyncSession) -> None:
    name = await _model_with_versions(session, 2)
    await aliases.set_alias(
        session,
        model_name=name,
        alias="staging",
        version=1,
        actor=WRITER,
        protected=PROTECTED,
        reason="first candidate",
    )
    await aliases.set_alias(
        session, model_name=name, alias="staging", version=2, actor=WRITER, protected=PROTECTED, reason="better recall"
    )
    history = await aliases.history(session, model_name=name, alias="staging")
    assert [(p.from_version, p.to_version, p.actor, p.reason) for p in history] == [
        (1, 2, "wendy", "better recall"),
        (None, 1, "wendy", "first candidate"),
    ]
    moved = (
        await session.scalars(select(Event).where(Event.model == name, Event.type == "alias.moved").order_by(Event.seq))
    ).all()
    assert [e.data["to_version"] for e in moved] == [1, 2]


async def test_compare_and_swap(session: AsyncSession) -> None:
    name = await _model_with_versions(session, 3)
    await aliases.set_alias(
        session, model_name=name, alias="staging", version=1, actor=WRITER, protected=PROTECTED, expect=None
    )
    with pytest.raises(Conflict) as caught:
        await aliases.set_alias(
            session, model_name=name, alias="staging", version=3, actor=WRITER, protected=PROTECTED, expect=2
        )
    assert caught.value.code == "alias_moved" and caught.value.extra["current"] == 1
    with pytest.raises(Conflict):  # expect "unset" but it is set
        await aliases.set_alias(
            session, model_name=name, alias="staging", version=3, actor=WRITER, protected=PROTECTED, expect=None
        )
    move = await aliases.set_alias(
        session, model_name=name, alias="staging", version=3, actor=WRITER, protected=PROTECTED, expect=1
    )
    assert move.promotion is not None and move.promotion.from_version == 1


async def test_protected_alias_needs_maintainer_and_is_audited(session: AsyncSession) -> None:
    name = await _model_with_versions(session, 1)
    with pytest.raises(Forbidden, match="maintainer"):
        await aliases.set_alias(
            session, model_name=name, alias="production", version=1, actor=WRITER, protected=PROTECTED
        )
    await aliases.set_alias(
        session, model_name=name, alias="production", version=1, actor=MAINTAINER, protected=PROTECTED, reason="launch"
    )
    audit = (await session.scalars(select(AuditEntry).where(AuditEntry.target == f"{name}@production"))).all()
    assert [(a.action, a.actor) for a in audit] == [("protected_alias.moved", "max")]
    with pytest.raises(Forbidden):
        await aliases.delete_alias(session, model_name=name, alias="production", actor=WRITER, protected=PROTECTED)


async def test_rollbacks_stack_back_through_history(session: AsyncSession) -> None:
    name = await _model_with_versions(session, 3)
    for v in (1, 2, 3):
        await aliases.set_alias(
            session, model_name=name, alias="champion", version=v, actor=WRITER, protected=PROTECTED
        )
    first = await aliases.rollback(session, model_name=name, alias="champion", actor=WRITER, protected=PROTECTED)
    second = await aliases.rollback(session, model_name=name, alias="champion", actor=WRITER, protected=PROTECTED)
    assert (first.version, second.version) == (2, 1)
    assert first.promotion is not None and first.promotion.action == "rollback"
    with pytest.raises(Conflict, match="no earlier holder"):
        await aliases.rollback(session, model_name=name, alias="champion", actor=WRITER, protected=PROTECTED)


async def test_invalid_alias_names(session: AsyncSession) -> None:
    name = await _model_with_versions(session, 1)
    for bad in ("latest", "v3", "1abc", "with space", "a/b", ""):
        with pytest.raises(InvalidInput):
            await aliases.set_alias(session, model_name=name, alias=bad, version=1, actor=WRITER, protected=PROTECTED)


async def test_deleting_a_version_removes_its_aliases_with_history(session: AsyncSession) -> None:
    name = await _model_with_versions(session, 2)
    await aliases.set_alias(session, model_name=name, alias="staging", version=2, actor=WRITER, protected=PROTECTED)
    await versions.delete_version(session, model_name=name, version=2, actor=WRITER, protected=PROTECTED)
    model, _ = await versions.list_versions(session, model_name=name)
    with pytest.raises(NotFound):
        await aliases.get(session, model=model, alias="staging")
    latest = (await aliases.history(session, model_name=name, alias="staging"))[0]
    assert (latest.action, latest.from_version, latest.to_version) == ("remove", 2, None)


async def test_setting_the_same_version_changes_nothing(session: AsyncSession) -> None:
    name = await _model_with_versions(session, 1)
    await aliases.set_alias(session, model_name=name, alias="staging", version=1, actor=WRITER, protected=PROTECTED)
    again = await aliases.set_alias(
        session, model_name=name, alias="staging", version=1, actor=WRITER, protected=PROTECTED
    )
    assert again.promotion is None
    assert len(await aliases.history(session, model_name=name)) == 1


async def test_an_alias_loaded_before_a_move_reads_the_new_version(session: AsyncSession) -> None:
    """The move is a Core update; an Alias this session holds from before must not keep the old version."""
    name = await _model_with_versions(session, 2)
    await aliases.set_alias(session, model_name=name, alias="staging", version=1, actor=WRITER, protected=PROTECTED)
    model = await models.get(session, name=name)
    held = await aliases.get(session, model=model, alias="staging")
    assert held.version == 1
    await aliases.set_alias(session, model_name=name, alias="staging", version=2, actor=WRITER, protected=PROTECTED)
    again = await aliases.get(session, model=model, alias="staging")
    assert again is held and again.version == 2  # the same object, reloaded
