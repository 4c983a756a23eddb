from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.runs import Metric, Param
from registry.errors import Conflict, InvalidInput, NotFound
from registry.services import runs
from registry.services.runs import MetricPoint
from tests.conftest import unique
from tests.factories.runs import WRITER, create_run


async def test_create_run_in_named_experiment_creates_it(session: AsyncSession) -> None:
    name = unique("exp")
    run = await create_run(session, experiment_name=name, name="first", tags={"team": "risk"})
    second = await create_run(session, experiment_name=name)
    assert run.experiment_id == second.experiment_id
    view = await runs.view(session, run_id=run.id)
    assert view.run.status == "RUNNING" and view.tags == {"team": "risk"} and len(run.id) == 32


async def test_runs_default_to_experiment_zero(session: AsyncSession) -> None:
    assert (await create_run(session)).experiment_id == 0


async def test_params_are_immutable_but_relogging_the_same_value_is_fine(session: AsyncSession) -> None:
    run = await create_run(session)
    await runs.log_batch(session, run_id=run.id, params=[("lr", "0.1"), ("layers", "3")])
    await runs.log_batch(session, run_id=run.id, params=[("lr", "0.1")])
    with pytest.raises(Conflict) as caught:
        await runs.log_batch(session, run_id=run.id, params=[("lr", "0.2")])
    assert "immutable" in caught.value.message and caught.value.code == "param_immutable"
    view = await runs.view(session, run_id=run.id)
    assert view.params == {"lr": "0.1", "layers": "3"}


async def test_conflicting_batch_stores_nothing(db: object) -> None:
    from registry.db import Database

    assert isinstance(db, Database)
    async with db.write() as s:
        run = await create_run(s)
        await runs.log_batch(s, run_id=run.id, params=[("a", "1")])
    with pytest.raises(Conflict):
        async with db.write() as s:
            await runs.log_batch(
                s, run_id=run.id, params=[("b", "2"), ("a", "9")], metrics=[MetricPoint("loss", 1.0, 1, 0)]
            )
    async with db.read() as s:
        params = (await s.execute(select(Param.key).where(Param.run_id == run.id))).scalars().all()
        metrics = await s.scalar(select(func.count()).select_from(Metric).where(Metric.run_id == run.id))
    assert params == ["a"] and metrics == 0


async def test_metric_history_and_latest_value(session: AsyncSession) -> None:
    run = await create_run(session)
    points = [MetricPoint("loss", 1.0 / (step + 1), timestamp=1_000 + step, step=step) for step in range(5000)]
    await runs.log_batch(session, run_id=run.id, metrics=points)
    # An older step logged later does not replace the latest value.
    await runs.log_batch(session, run_id=run.id, metrics=[MetricPoint("loss", 99.0, timestamp=9_999_999, step=3)])
    history = await runs.metric_history(session, run_id=run.id, key="loss")
    assert len(history) == 5001 and history[0].step == 0 and history[-1].step == 4999
    latest = {m.key: m for m in (await runs.view(session, run_id=run.id)).metrics}
    assert latest["loss"].step == 4999 and latest["loss"].value == pytest.approx(1 / 5000)


async def test_bad_keys_and_values_are_rejected(session: AsyncSession) -> None:
    run = await create_run(session)
    with pytest.raises(InvalidInput):
        await runs.log_batch(session, run_id=run.id, params=[("bad\x00key", "x")])
    with pytest.raises(InvalidInput):
        await runs.log_batch(session, run_id=run.id, metrics=[MetricPoint("m", float("nan"), 0)])
    with pytest.raises(InvalidInput):
        await runs.log_batch(session, run_id=run.id, params=[("k", "1"), ("k", "2")])


async def test_finishing_sets_end_time_and_unknown_status_is_refused(session: AsyncSession) -> None:
    run = await create_run(session)
    with pytest.raises(InvalidInput):
        await runs.update(session, run_id=run.id, actor=WRITER, status="DONE")
    done = await runs.update(session, run_id=run.id, actor=WRITER, status="FINISHED")
    assert done.end_time is not None and done.status == "FINISHED"


async def test_unknown_run_is_not_found(session: AsyncSession) -> None:
    with pytest.raises(NotFound):
        await runs.log_batch(session, run_id="0" * 32, params=[("a", "b")])
