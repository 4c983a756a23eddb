"""Migration 0011 on a database written before it: every metric's point count is filled in from its history,
and log-batch keeps counting from there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from registry import migrations
from registry.db import Database
from registry.domain.base import utcnow
from registry.domain.experiments import Experiment
from registry.domain.runs import Run
from registry.services import runs
from tests.automations.receivers import fresh_database


async def scenario(url: str) -> None:
    db = Database(url)
    try:
        await migrations.upgrade(db, "0010")
        async with db.write() as s:
            s.add(Experiment(id=1, name="e"))
            await s.flush()
            for run_id in ("a" * 32, "b" * 32):
                s.add(Run(id=run_id, experiment_id=1, name=run_id[:1], start_time=utcnow(), created_by="w"))
            await s.flush()
            # What the earlier code wrote: history rows and a latest row per key, no count.
            metrics = sa.table("metrics", *(sa.column(c) for c in ("run_id", "key", "value", "step", "timestamp")))
            latest = sa.table(
                "latest_metrics", *(sa.column(c) for c in ("run_id", "key", "value", "step", "timestamp"))
            )
            history = [("a" * 32, "loss", 7), ("a" * 32, "acc", 2), ("b" * 32, "loss", 1)]
            for run_id, key, n in history:
                await s.execute(
                    sa.insert(metrics),
                    [{"run_id": run_id, "key": key, "value": float(i), "step": i, "timestamp": i} for i in range(n)],
                )
                await s.execute(
                    sa.insert(latest).values(run_id=run_id, key=key, value=float(n - 1), step=n - 1, timestamp=n - 1)
                )
        await migrations.upgrade(db, "0011")
        async with db.read() as s:
            counted = {
                (r, k): p for r, k, p in await s.execute(sa.text("SELECT run_id, key, points FROM latest_metrics"))
            }
        assert counted == {("a" * 32, "loss"): 7, ("a" * 32, "acc"): 2, ("b" * 32, "loss"): 1}
        await migrations.upgrade(db)
        async with db.write() as s:
            # An older step than the latest: counted, and the latest value stays.
            await runs.log_batch(s, run_id="a" * 32, metrics=[runs.MetricPoint("loss", 0.5, timestamp=1, step=3)])
        async with db.read() as s:
            found = (
                await s.execute(
                    sa.text("SELECT points, value, step FROM latest_metrics WHERE key = 'loss' AND run_id = :r"),
                    {"r": "a" * 32},
                )
            ).one()
        assert tuple(found) == (8, 6.0, 6)
    finally:
        await db.dispose()


def test_0011_counts_the_points_already_logged(database_url: str, tmp_path: Path) -> None:
    with fresh_database(database_url, tmp_path) as url:
        asyncio.run(scenario(url))
