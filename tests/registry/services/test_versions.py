from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from registry.errors import AlreadyExists, InvalidInput, NotFound
from registry.services import artifacts, events, models, versions
from registry.services.artifacts import ManifestEntry
from tests.factories.artifacts import create_blob, create_run_file
from tests.factories.models import create_model, create_version
from tests.factories.runs import WRITER, create_run

PROTECTED = frozenset({"production"})


async def test_versions_are_numbered_per_model_and_never_reused(session: AsyncSession) -> None:
    model = await create_model(session)
    other = await create_model(session)
    numbers = [(await create_version(session, model=model)).version for _ in range(3)]
    assert numbers == [1, 2, 3]
    assert (await create_version(session, model=other)).version == 1
    await versions.delete_version(session, model_name=model.name, version=3, actor=WRITER, protected=PROTECTED)
    assert (await create_version(session, model=model)).version == 4
    with pytest.raises(NotFound):
        await versions.view(session, model_name=model.name, version=3)


async def test_duplicate_model_is_a_conflict(session: AsyncSession) -> None:
    model = await create_model(session)
    with pytest.raises(AlreadyExists):
        await models.create(session, name=model.name, actor=WRITER)


async def test_version_from_run_folder_is_a_snapshot(session: AsyncSession) -> None:
    run = await create_run(session)
    await create_run_file(session, run_id=run.id, path="model/weights.bin", content=b"v1 weights")
    await create_run_file(session, run_id=run.id, path="model/conf/params.json", content=b"{}")
    await create_run_file(session, run_id=run.id, path="plots/loss.png", content=b"png")
    model = await create_model(session)
    version = await create_version(session, model=model, run_id=run.id, path="model")
    # The run's file changes afterwards; the version keeps what it had.
    await create_run_file(session, run_id=run.id, path="model/weights.bin", content=b"v2 weights")
    view = await versions.view(session, model_name=model.name, version=version.version)
    assert [f.path for f in view.files] == ["conf/params.json", "weights.bin"]
    weights = next(f for f in view.files if f.path == "weights.bin")
    assert weights.size == len(b"v1 weights")
    assert version.run_id == run.id and version.source == f"runs:/{run.id}/model"
    assert version.digest == artifacts.manifest_digest(view.files)
    # The row, its files and its event are written together (one statement on PostgreSQL): the object handed
    # back is the stored row, and the event carries it.
    assert view.version.id == version.id and view.version.created_at == version.created_at
    created = [e for e in await events.list_after(session, model=model.name) if e.type == "model_version.created"]
    assert [(e.data["version"], e.data["digest"], e.subject) for e in created] == [
        (version.version, version.digest, f"models/{model.name}/versions/{version.version}")
    ]


async def test_version_needs_uploaded_blobs_and_clean_paths(session: AsyncSession) -> None:
    model = await create_model(session)
    missing = ManifestEntry(path="a.bin", sha256="a" * 64, size=3)
    with pytest.raises(InvalidInput, match="not uploaded"):
        await versions.create(session, model_name=model.name, actor=WRITER, entries=[missing])
    blob = await create_blob(session, b"abc")
    for bad in ("../escape", "/abs", "a\\b", "nul\x00"):
        with pytest.raises(InvalidInput):
            await versions.create(
                session,
                model_name=model.name,
                actor=WRITER,
                entries=[ManifestEntry(path=bad, sha256=blob.sha256, size=3)],
            )
    with pytest.raises(InvalidInput, match="size"):
        await versions.create(
            session, model_name=model.name, actor=WRITER, entries=[ManifestEntry(path="a", sha256=blob.sha256, size=4)]
        )
    assert (await models.get(session, name=model.name)).last_version == 0


async def test_unknown_model_and_empty_run_folder(session: AsyncSession) -> None:
    run = await create_run(session)
    model = await create_model(session)
    with pytest.raises(NotFound):
        await create_version(session, model=model, run_id=run.id, path="nothing-here")
    with pytest.raises(NotFound):
        await versions.view(session, model_name="no-such-model", version=1)


async def test_a_stage_transition_moves_the_stage_aliases(session: AsyncSession) -> None:
    from registry.domain.auth import Role
    from registry.errors import Forbidden
    from registry.services import aliases
    from registry.services.auth import Actor

    maintainer = Actor(name="max", role=Role.maintainer)
    model = await create_model(session)
    for _ in range(2):
        await create_version(session, model=model)
    moved = await versions.transition_stage(
        session, model_name=model.name, version=1, stage="production", actor=maintainer, protected=PROTECTED
    )
    assert moved.stage == "Production"
    # A version has one stage: taking Staging gives up production, which a writer may not do.
    with pytest.raises(Forbidden):
        await versions.transition_stage(
            session, model_name=model.name, version=1, stage="Staging", actor=WRITER, protected=PROTECTED
        )
    await versions.transition_stage(
        session, model_name=model.name, version=1, stage="Staging", actor=maintainer, protected=PROTECTED
    )
    assert await aliases.names_for(session, model_id=model.id, version=1) == ["staging"]
    assert [v.stage for v in (await versions.list_versions(session, model_name=model.name))[1]] == ["Staging", "None"]
    # Moving the alias natively moves the stage; a label-only transition needs no alias.
    await aliases.set_alias(
        session, model_name=model.name, alias="STAGING", version=2, actor=WRITER, protected=PROTECTED
    )
    await versions.transition_stage(
        session, model_name=model.name, version=1, stage="archived", actor=WRITER, protected=PROTECTED
    )
    listed = await versions.list_with_aliases(session, model_name=model.name)
    assert [(r.version.stage, r.aliases, r.file_count) for r in listed] == [
        ("Archived", [], 1),
        ("Staging", ["staging"], 1),
    ]
    with pytest.raises(InvalidInput):
        await versions.transition_stage(
            session, model_name=model.name, version=1, stage="Retired", actor=WRITER, protected=PROTECTED
        )
