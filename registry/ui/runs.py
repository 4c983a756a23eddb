"""The run page: params, tags, inputs, and metric charts fed by a downsampled series endpoint."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.response import Template

from registry.db import Database
from registry.services import experiments, names, runs
from registry.ui import sessions
from registry.ui._render import page
from registry.ui.lttb import downsample

MAX_POINTS = 5_000
"""A series longer than this reaches the browser downsampled (LTTB) to this many points: a chart is at most a
few thousand pixels wide, and a million points would cost seconds to send and draw."""
SYSTEM_PREFIX = "system/"


class RunPages(Controller):
    path = "/ui/runs"
    guards = [sessions.signed_in]
    include_in_schema = False

    @get("/{run_id:str}")
    async def run(self, request: Request[Any, Any, Any], run_id: str, db: Database) -> Template:
        async with db.read() as session:
            view = await runs.view(session, run_id=run_id)
            experiment = await experiments.get(session, experiment_id=view.run.experiment_id)
        training = [m for m in view.metrics if not m.key.startswith(SYSTEM_PREFIX)]
        system = [m for m in view.metrics if m.key.startswith(SYSTEM_PREFIX)]
        return page(request, "run.html", view=view, experiment=experiment, training=training, system=system)

    @get("/{run_id:str}/series")
    async def series(self, run_id: str, key: str, db: Database) -> dict[str, Any]:
        """One metric of the run for a chart: ``steps`` and ``values`` (at most ``MAX_POINTS``, LTTB-downsampled
        past that) and ``total``, the number of points stored."""
        names.key(key, what="metric key")
        async with db.read() as session:
            found = await runs.metric_series(session, run_id=run_id, key=key)
        steps, values = downsample(found.steps, found.values, MAX_POINTS)
        return {"key": key, "total": len(found.steps), "steps": steps, "values": values}
