"""Compare 2 to 5 runs side by side: a header per run, their params as a diff table, the latest value of each
metric, and each metric's history overlaid in one chart per key (drawn by ``compare.js`` from the run page's
downsampled ``/series`` endpoint)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get
from litestar.response import Template

from registry.db import Database
from registry.domain.experiments import Experiment
from registry.errors import InvalidInput, NotFound
from registry.services import experiments, runs
from registry.services.runs import MetricPoint, RunView
from registry.ui import sessions
from registry.ui._render import page, url_part
from registry.ui.runs import SYSTEM_PREFIX

MIN_RUNS = 2
MAX_RUNS = 5
"""One colour per run (``--chart-1`` .. ``--chart-5``), and a table still readable on a laptop."""
RUN_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Column:
    """One compared run: what its header shows, its chart colour (1-based) and its legend label."""

    view: RunView
    experiment: Experiment
    colour: int
    label: str


@dataclass(frozen=True, slots=True)
class ParamRow:
    key: str
    values: list[str | None]
    """One per run, None where the run has no such param."""
    differs: bool


@dataclass(frozen=True, slots=True)
class MetricRow:
    key: str
    latest: list[MetricPoint | None]
    """The latest point of ``key`` on each run, None where the run never logged it."""

    def chart_sources(self, columns: list[Column]) -> list[dict[str, Any]]:
        """What ``compare.js`` fetches and how it labels and colours each series: the runs that logged it."""
        return [
            {
                "url": f"/ui/runs/{url_part(c.view.run.id)}/series?key={url_part(self.key)}",
                "label": c.label,
                "colour": c.colour,
            }
            for c, point in zip(columns, self.latest, strict=True)
            if point is not None
        ]


def chosen_runs(ids: list[str] | None) -> list[str]:
    """The run ids to compare, in the order given. Raises InvalidInput for fewer than 2, more than 5, or a run
    named twice, and NotFound for a value no run id could have."""
    wanted = [i.strip() for i in ids or [] if i.strip()]
    if not MIN_RUNS <= len(wanted) <= MAX_RUNS:
        raise InvalidInput(
            f"pick {MIN_RUNS} to {MAX_RUNS} runs to compare (got {len(wanted)}): "
            "/ui/compare?run=ID&run=ID, one run= per run"
        )
    seen: set[str] = set()
    for run_id in wanted:
        if not RUN_ID.fullmatch(run_id):
            # Not an id this registry makes (32 hex digits): not worth a query.
            raise NotFound(f"run {run_id[:40]!r} does not exist")
        if run_id in seen:
            raise InvalidInput(f"run {run_id!r} is named twice; pick {MIN_RUNS} to {MAX_RUNS} different runs")
        seen.add(run_id)
    return wanted


def labels(views: list[RunView]) -> list[str]:
    """Legend labels: the run's name, with the start of its id where names repeat."""
    names = [v.run.name for v in views]
    return [f"{n} ({v.run.id[:8]})" if names.count(n) > 1 else n for n, v in zip(names, views, strict=True)]


def param_rows(views: list[RunView]) -> list[ParamRow]:
    keys = sorted({k for v in views for k in v.params})
    rows = []
    for key in keys:
        values = [v.params.get(key) for v in views]
        rows.append(ParamRow(key=key, values=values, differs=len(set(values)) > 1))
    return rows


def metric_rows(views: list[RunView]) -> list[MetricRow]:
    latest = [{m.key: m for m in v.metrics} for v in views]
    keys = sorted({k for by_key in latest for k in by_key})
    return [MetricRow(key=k, latest=[by_key.get(k) for by_key in latest]) for k in keys]


def compare_url(ids: list[str], *, only_diff: bool) -> str:
    query = [("run", i) for i in ids] + ([("only_diff", "1")] if only_diff else [])
    return f"/ui/compare?{urlencode(query)}"


class ComparePages(Controller):
    path = "/ui/compare"
    guards = [sessions.signed_in]
    include_in_schema = False

    @get("/")
    async def compare(
        self,
        request: Request[Any, Any, Any],
        db: Database,
        run: list[str] | None = None,
        only_diff: bool = False,
    ) -> Template:
        ids = chosen_runs(run)
        async with db.read() as session:
            views = [await runs.view(session, run_id=i) for i in ids]
            found: dict[int, Experiment] = {}
            for v in views:
                if v.run.experiment_id not in found:
                    found[v.run.experiment_id] = await experiments.get(session, experiment_id=v.run.experiment_id)
        columns = [
            Column(view=v, experiment=found[v.run.experiment_id], colour=n, label=label)
            for n, (v, label) in enumerate(zip(views, labels(views), strict=True), start=1)
        ]
        params = param_rows(views)
        metrics = metric_rows(views)
        return page(
            request,
            "compare.html",
            columns=columns,
            params=[p for p in params if p.differs] if only_diff else params,
            param_count=len(params),
            differing=sum(p.differs for p in params),
            only_diff=only_diff,
            all_url=compare_url(ids, only_diff=False),
            diff_url=compare_url(ids, only_diff=True),
            training=[m for m in metrics if not m.key.startswith(SYSTEM_PREFIX)],
            system=[m for m in metrics if m.key.startswith(SYSTEM_PREFIX)],
        )
