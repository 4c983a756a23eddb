"""Training runs: lifecycle, params (immutable once set), metric history, tags, code/environment capture."""

from __future__ import annotations

import math
import secrets
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, cast

from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    Float,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.artifacts import ArtifactVersion, Blob, RunInput
from registry.domain.models import ModelVersion, RegisteredModel
from registry.domain.runs import RUN_STATUSES, TERMINAL_STATUSES, LatestMetric, Metric, Param, Run, RunTag
from registry.errors import Conflict, InvalidInput, NotFound
from registry.services import events, experiments, names
from registry.services._sql import dialect, insert_for, put_tags, statement, upsert
from registry.services.auth import Actor

METRICS = cast(Table, Metric.__table__)
"""Metric points are written with Core inserts: the ORM's bulk path costs more than the rows."""
MAX_BATCH = 10_000
MAX_PARAM_VALUE = 6000
_ADJECTIVES = ("amber", "bold", "calm", "deft", "eager", "fond", "glad", "keen", "lucid", "merry", "noble")
_NOUNS = ("otter", "heron", "lynx", "finch", "panda", "tapir", "ibis", "koala", "marten", "wren")


@dataclass(frozen=True, slots=True)
class MetricPoint:
    key: str
    value: float
    timestamp: int
    """Epoch milliseconds."""
    step: int = 0


@dataclass(frozen=True, slots=True)
class GitInfo:
    commit: str | None = None
    branch: str | None = None
    remote: str | None = None
    dirty: bool | None = None
    diff_sha256: str | None = None
    """Blob holding the uncommitted diff (tracked changes), uploaded beforehand."""
    untracked: list[str] | None = None


@dataclass(slots=True)
class RunView:
    run: Run
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[MetricPoint] = field(default_factory=list)
    """The latest value of each key, by key."""
    inputs: list[ArtifactVersion] = field(default_factory=list)


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def random_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(1000)}"


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


async def create(
    session: AsyncSession,
    *,
    actor: Actor,
    experiment_id: int | None = None,
    experiment_name: str | None = None,
    name: str | None = None,
    user: str | None = None,
    start_time: int | None = None,
    tags: dict[str, str] | None = None,
    git: GitInfo | None = None,
    environment: dict[str, Any] | None = None,
) -> Run:
    """Start a run in an experiment (by id, or by name, created if missing; default experiment otherwise)."""
    if experiment_name is not None:
        experiment = await experiments.get_or_create(session, name=experiment_name, actor=actor)
    else:
        experiment_id = experiments.DEFAULT_EXPERIMENT_ID if experiment_id is None else experiment_id
        experiment = await experiments.get(session, experiment_id=experiment_id)
    if experiment.lifecycle_stage != "active":
        raise Conflict(f"experiment {experiment.name!r} is deleted")
    if name:  # an empty name gets a random one; a long one is cut to 250 characters below
        names.label(name[:250], what="run name", field="name", max_length=250)
    if user:
        names.label(user, what="user", field="user", max_length=256)
    # FOR SHARE (PostgreSQL): gc locks a blob row FOR UPDATE before deleting it, so it waits for this commit.
    found = select(Blob.sha256).where(Blob.sha256 == (git.diff_sha256 if git else None)).with_for_update(read=True)
    if git and git.diff_sha256 and await session.scalar(found) is None:
        raise InvalidInput(f"git diff blob {git.diff_sha256} was not uploaded", field="git.diff_sha256")
    run = Run(
        experiment_id=experiment.id,
        name=(name or random_name())[:250],
        user=user or actor.name,
        status="RUNNING",
        start_time=from_ms(start_time) if start_time is not None else datetime.now(UTC),
        created_by=actor.name,
        git_commit=git.commit if git else None,
        git_branch=git.branch if git else None,
        git_remote=git.remote if git else None,
        git_dirty=git.dirty if git else None,
        git_diff_sha256=git.diff_sha256 if git else None,
        git_untracked=git.untracked if git else None,
        environment=environment,
    )
    session.add(run)
    await session.flush()
    if tags:
        await _set_tags(session, run.id, list(tags.items()))
    await events.record(
        session,
        type="run.created",
        subject=f"runs/{run.id}",
        actor=actor.name,
        data={"run_id": run.id, "experiment_id": experiment.id, "name": run.name},
    )
    return run


async def get(session: AsyncSession, *, run_id: str, for_write: bool = False) -> Run:
    run = await session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id!r} does not exist")
    if for_write and run.lifecycle_stage != "active":
        raise Conflict(f"run {run_id!r} is deleted")
    return run


_VIEW_KEYS: Final[CompoundSelect[str, str, str]] = union_all(
    select(literal_column("'p'", String).label("kind"), Param.key, Param.value).where(Param.run_id == bindparam("run")),
    select(literal_column("'t'", String), RunTag.key, RunTag.value).where(RunTag.run_id == bindparam("run")),
)
_VIEW_LATEST: Final = (
    select(LatestMetric.key, LatestMetric.value, LatestMetric.timestamp, LatestMetric.step)
    .where(LatestMetric.run_id == bindparam("run"))
    .order_by(LatestMetric.key)
)
_VIEW_INPUTS: Final = (
    select(ArtifactVersion)
    .join(RunInput, RunInput.artifact_id == ArtifactVersion.id)
    .where(RunInput.run_id == bindparam("run"))
    .order_by(ArtifactVersion.name, ArtifactVersion.version)
)
"""A run's view is a hot read (every ``runs/get``): its statements are built, and their cache keys computed,
once."""


async def view(session: AsyncSession, *, run_id: str) -> RunView:
    """The run with its params, tags, latest metrics and consumed artifact versions."""
    result = RunView(run=await get(session, run_id=run_id))
    where = {"run": run_id}
    for kind, key, value in await session.execute(_VIEW_KEYS, where):
        (result.params if kind == "p" else result.tags)[key] = value
    latest = await session.execute(_VIEW_LATEST, where)
    result.metrics = [MetricPoint(key, value, timestamp, step) for key, value, timestamp, step in latest.all()]
    result.inputs = list(await session.scalars(_VIEW_INPUTS, where))
    return result


async def versions_of(session: AsyncSession, *, run_id: str, limit: int = 100) -> list[tuple[str, int]]:
    """``(model name, version)`` of the model versions registered from the run, newest first: lineage's
    downstream side."""
    rows = await session.execute(
        select(RegisteredModel.name, ModelVersion.version)
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
        .where(ModelVersion.run_id == run_id)
        .order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
        .limit(limit)
    )
    return [(name, int(version)) for name, version in rows.all()]


async def diff_size(session: AsyncSession, *, run: Run) -> int | None:
    """Bytes of the run's uncommitted diff, None when it has none."""
    if not run.git_diff_sha256:
        return None
    size = await session.scalar(select(Blob.size).where(Blob.sha256 == run.git_diff_sha256))
    return int(size) if size is not None else None


async def counts_by_experiment(session: AsyncSession, experiment_ids: list[int]) -> dict[int, int]:
    """How many runs each experiment holds, in one query."""
    if not experiment_ids:
        return {}
    rows = await session.execute(
        select(Run.experiment_id, func.count()).where(Run.experiment_id.in_(experiment_ids)).group_by(Run.experiment_id)
    )
    return {int(e): int(n) for e, n in rows.all()}


async def page_of_experiment(session: AsyncSession, *, experiment_id: int, before: str, limit: int) -> list[Run]:
    """Runs of the experiment, newest first (``start_time DESC, id``, the API's order), after the run
    ``before`` when given: keyset, so the last page costs what the first does."""
    query = select(Run).where(Run.experiment_id == experiment_id)
    if before:
        anchor = await session.get(Run, before) if len(before) <= 32 else None
        if anchor is None or anchor.experiment_id != experiment_id:
            raise InvalidInput("before must be the id of a run of this experiment", field="before")
        query = query.where(
            or_(
                Run.start_time < anchor.start_time,
                and_(Run.start_time == anchor.start_time, Run.id > anchor.id),
            )
        )
    return list(await session.scalars(query.order_by(Run.start_time.desc(), Run.id).limit(limit)))


async def latest_by_run(session: AsyncSession, run_ids: list[str]) -> dict[str, list[LatestMetric]]:
    """Each run's latest metric values (``system/`` ones left out), by run id, in one query."""
    found: dict[str, list[LatestMetric]] = {}
    if run_ids:
        rows = await session.scalars(
            select(LatestMetric)
            .where(LatestMetric.run_id.in_(run_ids), ~LatestMetric.key.startswith("system/", autoescape=True))
            .order_by(LatestMetric.run_id, LatestMetric.key)
        )
        for metric in rows:
            found.setdefault(metric.run_id, []).append(metric)
    return found


async def list_runs(
    session: AsyncSession, *, experiment_id: int | None = None, limit: int = 100, offset: int = 0
) -> list[Run]:
    query = select(Run).order_by(Run.start_time.desc(), Run.id).limit(limit).offset(offset)
    if experiment_id is not None:
        query = query.where(Run.experiment_id == experiment_id)
    return list(await session.scalars(query))


async def update(
    session: AsyncSession,
    *,
    run_id: str,
    actor: Actor,
    status: str | None = None,
    end_time: int | None = None,
    name: str | None = None,
) -> Run:
    """Change status/name; a terminal status sets ``end_time`` (now unless given)."""
    run = await get(session, run_id=run_id, for_write=True)
    if status is not None:
        if status not in RUN_STATUSES:
            raise InvalidInput(f"unknown run status {status!r}: use one of {', '.join(RUN_STATUSES)}", field="status")
        run.status = status
        if status in TERMINAL_STATUSES:
            run.end_time = from_ms(end_time) if end_time is not None else datetime.now(UTC)
    elif end_time is not None:
        run.end_time = from_ms(end_time)
    if name is not None:
        run.name = names.label(name, what="run name", field="name", max_length=250)
    await session.flush()
    if status in TERMINAL_STATUSES:
        await events.record(
            session,
            type="run.finished",
            subject=f"runs/{run.id}",
            actor=actor.name,
            data={"run_id": run.id, "status": status},
        )
    return run


async def log_batch(
    session: AsyncSession,
    *,
    run_id: str,
    params: list[tuple[str, str]] | None = None,
    metrics: list[MetricPoint] | None = None,
    tags: list[tuple[str, str]] | None = None,
) -> None:
    """Log params, metric points and tags in one go (all or nothing).

    Raises Conflict if a param is re-logged with a different value (the same value is accepted), and
    InvalidInput for bad keys, values or an oversize batch.
    """
    params, metrics, tags = params or [], metrics or [], tags or []
    if len(params) + len(metrics) + len(tags) > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} params, metrics and tags together")
    await get(session, run_id=run_id, for_write=True)
    if params:
        await _log_params(session, run_id, params)
    if metrics:
        await _log_metrics(session, run_id, metrics)
    if tags:
        await _set_tags(session, run_id, tags)


async def _log_params(session: AsyncSession, run_id: str, params: list[tuple[str, str]]) -> None:
    wanted: dict[str, str] = {}
    for key, value in params:
        names.key(key, what="param key")
        value = str(value)
        if len(value) > MAX_PARAM_VALUE:
            raise InvalidInput(f"param {key!r} is longer than {MAX_PARAM_VALUE} characters", field="params")
        if wanted.setdefault(key, value) != value:
            raise InvalidInput(f"param {key!r} is given twice with different values", field="params")
    # Insert-or-ignore then compare: race-free on both databases (a concurrent writer of the same key
    # either lands first and we compare against it, or we land first and it compares against us).
    await session.execute(
        statement(session, "param_insert", _param_insert),
        [{"run_id": run_id, "key": k, "value": v} for k, v in wanted.items()],
    )
    stored = await session.execute(
        select(Param.key, Param.value).where(Param.run_id == run_id, Param.key.in_(list(wanted)))
    )
    for key, value in stored.all():
        if value != wanted[key]:
            raise Conflict(
                f"param {key!r} is already {value!r} on run {run_id}; params are immutable "
                f"(log {wanted[key]!r} under another key or start a new run)",
                code="param_immutable",
                key=key,
            )


async def _log_metrics(session: AsyncSession, run_id: str, metrics: list[MetricPoint]) -> None:
    rows: list[dict[str, Any]] = []
    best: dict[str, MetricPoint] = {}
    counts: Counter[str] = Counter()
    for point in metrics:
        counts[point.key] += 1
        names.key(point.key, what="metric key")
        if not math.isfinite(point.value):
            raise InvalidInput(f"metric {point.key!r} has a non-finite value", field="metrics")
        rows.append(
            {
                "run_id": run_id,
                "key": point.key,
                "value": point.value,
                "step": point.step,
                "timestamp": point.timestamp,
            }
        )
        current = best.get(point.key)
        if current is None or (point.step, point.timestamp, point.value) > (
            current.step,
            current.timestamp,
            current.value,
        ):
            best[point.key] = point
    await session.execute(insert(METRICS), rows)
    await session.execute(
        statement(session, "latest_metric_upsert", _latest_metric_upsert),
        [
            {
                "run_id": run_id,
                "key": p.key,
                "value": p.value,
                "step": p.step,
                "timestamp": p.timestamp,
                "points": counts[p.key],
            }
            for p in best.values()
        ],
    )


def _latest_metric_upsert(dialect_name: str) -> Any:
    # Latest value per key: largest step, then newest timestamp, then largest value (MLflow's order).
    latest = LatestMetric.__table__
    stmt = insert_for(dialect_name, latest)
    newer = or_(
        stmt.excluded.step > latest.c.step,
        and_(stmt.excluded.step == latest.c.step, stmt.excluded.timestamp > latest.c.timestamp),
        and_(
            stmt.excluded.step == latest.c.step,
            stmt.excluded.timestamp == latest.c.timestamp,
            stmt.excluded.value > latest.c.value,
        ),
    )
    # Every batch adds its points to the count; only a newer point replaces the latest value.
    return stmt.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={
            "value": case((newer, stmt.excluded.value), else_=latest.c.value),
            "step": case((newer, stmt.excluded.step), else_=latest.c.step),
            "timestamp": case((newer, stmt.excluded.timestamp), else_=latest.c.timestamp),
            "points": latest.c.points + stmt.excluded.points,
        },
    )


def _param_insert(dialect_name: str) -> Any:
    return insert_for(dialect_name, Param.__table__).on_conflict_do_nothing(index_elements=["run_id", "key"])


async def _set_tags(session: AsyncSession, run_id: str, tags: list[tuple[str, str]]) -> None:
    merged: dict[str, str] = {}
    for key, value in tags:
        names.key(key, what="tag key")
        merged[key] = str(value)
    await put_tags(session, RunTag.__table__, "run_id", run_id, merged)


async def metric_history(
    session: AsyncSession, *, run_id: str, key: str, limit: int = 25_000, offset: int = 0
) -> list[Metric]:
    await get(session, run_id=run_id)
    rows = await session.scalars(
        select(Metric)
        .where(Metric.run_id == run_id, Metric.key == key)
        .order_by(Metric.step, Metric.timestamp, Metric.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


@dataclass(frozen=True, slots=True)
class MetricSeries:
    """One metric's whole history as columns, in step order (then time): what a chart reads."""

    steps: list[int]
    timestamps: list[int]
    values: list[float]


async def metric_series(session: AsyncSession, *, run_id: str, key: str) -> MetricSeries:
    """Every point of ``key`` on the run, as columns. Rows are read as plain tuples, not an ORM object per
    point: a chart reads whole histories, which run to millions of points. Raises NotFound for an unknown run."""
    await get(session, run_id=run_id)
    rows = await session.execute(
        select(Metric.step, Metric.timestamp, Metric.value)
        .where(Metric.run_id == run_id, Metric.key == key)
        .order_by(Metric.step, Metric.timestamp, Metric.id)
    )
    found = rows.all()
    if not found:
        return MetricSeries(steps=[], timestamps=[], values=[])
    steps, timestamps, values = zip(*found, strict=True)
    return MetricSeries(steps=list(steps), timestamps=list(timestamps), values=list(values))


@dataclass(frozen=True, slots=True)
class SeriesForChart:
    """A metric's history as a chart needs it: every point when there are at most ``limit``, else each of
    ``limit // 2`` equal step ranges reduced to its lowest and highest value (min-max decimation)."""

    steps: list[int]
    timestamps: list[int]
    values: list[float]
    total: int
    """Points stored."""
    reduced: bool


_REDUCED: OrderedDict[tuple[str, str], tuple[tuple[int, int, int], SeriesForChart]] = OrderedDict()
REDUCED_KEPT = 32
"""Reduced series kept per process (about 0.3 MB each), the least recently drawn dropped first."""


async def series_for_chart(session: AsyncSession, *, run_id: str, key: str, limit: int) -> SeriesForChart:
    """``key``'s history on the run for a chart of at most ``limit`` points, reduced in the database.

    A million points cost seconds to read into Python and carry nothing a chart a few thousand pixels wide
    can show. A series of at most ``limit`` points is read whole. A longer one is cut into
    ``(limit - 2) // 2`` equal step ranges (time ranges when every point has the same step), and each range
    keeps its lowest and its highest point, each at the step and time it was logged, plus the very first and
    last points (M4-style decimation): peaks, dips and the final value survive at any zoom a screen can show.
    The database does the reading (Python sees at most ``limit`` rows), and the answer is kept per process
    until the series changes: ``latest_metrics`` counts every point logged, so a chart knows without a scan
    whether the series it drew is still the series stored. Raises NotFound for an unknown run."""
    await get(session, run_id=run_id)
    where = (Metric.run_id == run_id, Metric.key == key)
    order = (Metric.step, Metric.timestamp, Metric.id)
    latest = (
        await session.execute(
            select(LatestMetric.points, LatestMetric.step, LatestMetric.timestamp).where(
                LatestMetric.run_id == run_id, LatestMetric.key == key
            )
        )
    ).one_or_none()
    if latest is None:
        return SeriesForChart([], [], [], total=0, reduced=False)
    if latest[0] <= limit:
        head = (
            await session.execute(
                select(Metric.step, Metric.timestamp, Metric.value).where(*where).order_by(*order).limit(limit + 1)
            )
        ).all()
        if len(head) <= limit:
            steps, timestamps, values = (list(c) for c in zip(*head, strict=True)) if head else ([], [], [])
            return SeriesForChart(steps, timestamps, values, total=len(head), reduced=False)
    fingerprint = (int(latest[0]), int(latest[1]), int(latest[2]))
    kept = _REDUCED.get((run_id, key))
    if kept is not None and kept[0] == fingerprint:
        _REDUCED.move_to_end((run_id, key))
        return kept[1]
    reduced = await _reduce(session, where=where, order=order, limit=limit)
    _REDUCED[(run_id, key)] = (fingerprint, reduced)
    while len(_REDUCED) > REDUCED_KEPT:
        _REDUCED.popitem(last=False)
    return reduced


async def _reduce(
    session: AsyncSession, *, where: tuple[Any, ...], order: tuple[Any, ...], limit: int
) -> SeriesForChart:
    select_point = select(Metric.step, Metric.timestamp, Metric.value).where(*where)
    head = (await session.execute(select_point.order_by(*order).limit(1))).one()
    tail = (await session.execute(select_point.order_by(*(c.desc() for c in order)).limit(1))).one()
    axis: Any = Metric.step
    first, last = int(head[0]), int(tail[0])
    if last == first:
        axis = Metric.timestamp
        bounds = (await session.execute(select(func.min(axis), func.max(axis)).where(*where))).one()
        first, last = int(bounds[0]), int(bounds[1])
    span = max(last - first, 1)
    buckets = max((limit - 2) // 2, 1)
    # Float arithmetic: (x - first) * buckets could overflow 64 bits for huge steps. The last point lands in
    # bucket ``buckets``, which the clamp folds into the one before.
    position = sql_cast(axis - first, Float) / span * buckets
    points: set[tuple[int, int, float]] = {
        (int(head[0]), int(head[1]), float(head[2])),
        (int(tail[0]), int(tail[1]), float(tail[2])),
    }
    total = 0
    if dialect(session) == "postgresql":
        from sqlalchemy.dialects.postgresql import array

        label = func.least(sql_cast(func.floor(position), BigInteger), buckets - 1).label("bucket")
        # min()/max() over arrays compare element by element: the value first, then where it was logged.
        # (Steps and times travel as float8 here: exact up to 2**53.)
        where_logged = array([Metric.value, sql_cast(Metric.step, Float), sql_cast(Metric.timestamp, Float)])
        rows = await session.execute(
            select(label, func.count(), func.min(where_logged), func.max(where_logged)).where(*where).group_by(label)
        )
        for _bucket, count, low, high in rows:
            total += count
            points.update((int(p[1]), int(p[2]), float(p[0])) for p in (low, high))
    else:
        # SQLite: in a query with a single min() or max(), the other columns come from the row that holds it.
        label = func.min(sql_cast(position, BigInteger), buckets - 1).label("bucket")
        for extreme in (func.min, func.max):
            rows = await session.execute(
                select(label, func.count(), Metric.step, Metric.timestamp, extreme(Metric.value))
                .where(*where)
                .group_by(label)
            )
            counted = 0
            for _bucket, count, step, timestamp, value in rows:
                counted += count
                points.add((int(step), int(timestamp), float(value)))
            total = counted
    ordered = sorted(points)
    return SeriesForChart(
        steps=[p[0] for p in ordered],
        timestamps=[p[1] for p in ordered],
        values=[p[2] for p in ordered],
        total=total,
        reduced=True,
    )


async def record_input(
    session: AsyncSession, *, run_id: str, artifact: ArtifactVersion, context: str | None = None
) -> None:
    """Lineage: the run consumed ``artifact`` (idempotent). Raises InvalidInput for a context (``training``,
    ``evaluation`` ...) over 64 characters or with control characters."""
    if context is not None:
        names.label(context, what="input context", field="context", max_length=64)
    await get(session, run_id=run_id, for_write=True)
    stmt = upsert(session, RunInput).values(run_id=run_id, artifact_id=artifact.id, context=context)
    await session.execute(stmt.on_conflict_do_nothing(index_elements=["run_id", "artifact_id"]))


async def set_lifecycle(session: AsyncSession, *, run_id: str, actor: Actor, deleted: bool) -> Run:
    """Soft-delete or restore a run (its data stays; deleted runs refuse new writes)."""
    run = await get(session, run_id=run_id)
    stage = "deleted" if deleted else "active"
    if run.lifecycle_stage != stage:
        run.lifecycle_stage = stage
        await events.record(
            session,
            type="run.deleted" if deleted else "run.restored",
            subject=f"runs/{run.id}",
            actor=actor.name,
            data={"run_id": run.id},
        )
        await session.flush()
    return run


async def delete_tag(session: AsyncSession, *, run_id: str, key: str) -> None:
    await get(session, run_id=run_id, for_write=True)
    result = await session.execute(delete(RunTag).where(RunTag.run_id == run_id, RunTag.key == key))
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"run {run_id} has no tag {key!r}")
