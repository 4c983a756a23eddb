"""MLflow tracking endpoints: experiments, runs, params, metrics, tags, search. Thin over the services."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post

from registry.api.mlflow import _wire as wire
from registry.api.security import WRITER
from registry.api.v1._common import EpochMs, Int64, int64_or_none
from registry.db import Database
from registry.errors import InvalidInput, NotFound
from registry.services import experiments, runs, search
from registry.services.auth import Actor
from registry.services.runs import MetricPoint

MAX_HISTORY = 25_000
MAX_EXPERIMENTS = 50_000
"""MLflow's own server refuses larger ``max_results`` when searching experiments."""


class CreateExperiment(msgspec.Struct):
    name: str | None = None
    artifact_location: str | None = None
    tags: list[wire.KeyValue] = []


class CreateRun(msgspec.Struct):
    experiment_id: str | None = None
    user_id: str | None = None
    run_name: str | None = None
    start_time: EpochMs | None = None
    tags: list[wire.KeyValue] = []


class RunRef(msgspec.Struct):
    run_id: str | None = None
    run_uuid: str | None = None

    @property
    def id(self) -> str:
        return wire.require(self.run_id or self.run_uuid, "run_id")


class UpdateRun(RunRef):
    status: str | None = None
    end_time: EpochMs | None = None
    run_name: str | None = None


class LogParam(RunRef):
    key: str | None = None
    value: str | None = None


class LogMetric(RunRef):
    key: str | None = None
    value: float | None = None
    timestamp: Int64 | None = None
    step: Int64 | None = None


class SetTag(RunRef):
    key: str | None = None
    value: str | None = None


class MetricIn(msgspec.Struct):
    key: str
    value: float
    timestamp: Int64 | None = None
    step: Int64 | None = None


class ParamIn(msgspec.Struct):
    key: str
    value: str | None = None


class LogBatch(RunRef):
    metrics: list[MetricIn] = []
    params: list[ParamIn] = []
    tags: list[wire.KeyValue] = []


class SearchRuns(msgspec.Struct):
    experiment_ids: list[str] = []
    filter: str | None = None
    run_view_type: str | None = None
    max_results: int | None = None
    order_by: list[str] = []
    page_token: str | None = None


class SearchExperiments(msgspec.Struct):
    max_results: Annotated[int, msgspec.Meta(ge=0, le=MAX_EXPERIMENTS)] | None = None
    page_token: str | None = None
    filter: str | None = None
    view_type: str | None = None


def _point(key: str | None, value: float | None, timestamp: int | None, step: int | None) -> MetricPoint:
    return MetricPoint(
        key=wire.require(key, "key"),
        value=wire.require(value, "value"),
        timestamp=timestamp if timestamp is not None else runs.now_ms(),
        step=step or 0,
    )


def _experiment_id(value: str | None) -> int:
    """An experiment id; one that is no int64 names no experiment (NotFound, like any unknown id)."""
    try:
        number = int(wire.require(value, "experiment_id"))
    except ValueError:
        raise NotFound(f"experiment {value!r} does not exist") from None
    if int64_or_none(number) is None:
        raise NotFound(f"experiment {value!r} does not exist")
    return number


class TrackingController(Controller):
    path = "/"

    @get("/experiments/get-by-name")
    async def experiment_by_name(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        async with db.read(short=True) as session:
            found = await experiments.get_by_name(session, name=wire.query(request, "experiment_name"))
            tags = await experiments.tags_of(session, experiment_id=found.id)
        return {"experiment": wire.experiment_json(found, tags)}

    @get("/experiments/get")
    async def experiment(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        async with db.read(short=True) as session:
            found = await experiments.get(session, experiment_id=_experiment_id(wire.query(request, "experiment_id")))
            tags = await experiments.tags_of(session, experiment_id=found.id)
        return {"experiment": wire.experiment_json(found, tags)}

    @post("/experiments/create", guards=WRITER, status_code=200)
    async def create_experiment(self, request: Request[Any, Any, Any], db: Database, actor: Actor) -> dict[str, Any]:
        data = await wire.body(request, CreateExperiment)
        async with db.write() as session:
            created = await experiments.create(
                session,
                name=wire.require(data.name, "name"),
                actor=actor,
                artifact_location=data.artifact_location,
                tags={t.key: t.value or "" for t in data.tags},
            )
        return {"experiment_id": str(created.id)}

    @post("/experiments/search", status_code=200)
    async def search_experiments(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        data = await wire.body(request, SearchExperiments)
        limit = data.max_results or 1000
        offset = wire.page_offset(data.page_token)
        async with db.read() as session:
            rows = await experiments.list_experiments(session, limit=limit + 1, offset=offset)
            out = [
                wire.experiment_json(e, await experiments.tags_of(session, experiment_id=e.id)) for e in rows[:limit]
            ]
        result: dict[str, Any] = {"experiments": out}
        if len(rows) > limit:
            result["next_page_token"] = wire.page_token(offset + limit)
        return result

    @post("/runs/create", guards=WRITER, status_code=200)
    async def create_run(self, request: Request[Any, Any, Any], db: Database, actor: Actor) -> dict[str, Any]:
        data = await wire.body(request, CreateRun)
        tags = {t.key: t.value or "" for t in data.tags}
        name = data.run_name or tags.get("mlflow.runName") or runs.random_name()
        tags["mlflow.runName"] = name
        async with db.write() as session:
            run = await runs.create(
                session,
                actor=actor,
                experiment_id=_experiment_id(data.experiment_id or "0"),
                name=name,
                user=data.user_id or actor.name,
                start_time=data.start_time,
                tags=tags,
            )
            view = await runs.view(session, run_id=run.id)
        return {"run": wire.run_json(view)}

    @get("/runs/get")
    async def get_run(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        run_id = request.query_params.get("run_id") or wire.query(request, "run_uuid")
        async with db.read(short=True) as session:
            view = await runs.view(session, run_id=run_id)
        return {"run": wire.run_json(view)}

    @post("/runs/update", guards=WRITER, status_code=200)
    async def update_run(self, request: Request[Any, Any, Any], db: Database, actor: Actor) -> dict[str, Any]:
        data = await wire.body(request, UpdateRun)
        async with db.write() as session:
            run = await runs.update(
                session, run_id=data.id, actor=actor, status=data.status, end_time=data.end_time, name=data.run_name
            )
            if data.run_name:
                await runs.log_batch(session, run_id=run.id, tags=[("mlflow.runName", data.run_name)])
        return {"run_info": wire.run_info_json(run)}

    @post("/runs/delete", guards=WRITER, status_code=200)
    async def delete_run(self, request: Request[Any, Any, Any], db: Database, actor: Actor) -> dict[str, Any]:
        data = await wire.body(request, RunRef)
        async with db.write() as session:
            await runs.set_lifecycle(session, run_id=data.id, actor=actor, deleted=True)
        return {}

    @post("/runs/restore", guards=WRITER, status_code=200)
    async def restore_run(self, request: Request[Any, Any, Any], db: Database, actor: Actor) -> dict[str, Any]:
        data = await wire.body(request, RunRef)
        async with db.write() as session:
            await runs.set_lifecycle(session, run_id=data.id, actor=actor, deleted=False)
        return {}

    @post("/runs/log-parameter", guards=WRITER, status_code=200)
    async def log_param(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        data = await wire.body(request, LogParam)
        async with db.write() as session:
            await runs.log_batch(session, run_id=data.id, params=[(wire.require(data.key, "key"), data.value or "")])
        return {}

    @post("/runs/log-metric", guards=WRITER, status_code=200)
    async def log_metric(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        data = await wire.body(request, LogMetric)
        point = _point(data.key, data.value, data.timestamp, data.step)
        async with db.write() as session:
            await runs.log_batch(session, run_id=data.id, metrics=[point])
        return {}

    @post("/runs/set-tag", guards=WRITER, status_code=200)
    async def set_tag(self, request: Request[Any, Any, Any], db: Database, actor: Actor) -> dict[str, Any]:
        data = await wire.body(request, SetTag)
        key, value = wire.require(data.key, "key"), data.value or ""
        async with db.write() as session:
            await runs.log_batch(session, run_id=data.id, tags=[(key, value)])
            if key == "mlflow.runName" and value:
                await runs.update(session, run_id=data.id, actor=actor, name=value)
        return {}

    @post("/runs/delete-tag", guards=WRITER, status_code=200)
    async def delete_tag(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        data = await wire.body(request, SetTag)
        async with db.write() as session:
            await runs.delete_tag(session, run_id=data.id, key=wire.require(data.key, "key"))
        return {}

    @post("/runs/log-batch", guards=WRITER, status_code=200)
    async def log_batch(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        data = await wire.body(request, LogBatch)
        points = [_point(m.key, m.value, m.timestamp, m.step) for m in data.metrics]
        async with db.write() as session:
            await runs.log_batch(
                session,
                run_id=data.id,
                params=[(p.key, p.value or "") for p in data.params],
                metrics=points,
                tags=[(t.key, t.value or "") for t in data.tags],
            )
        return {}

    @post("/runs/search", status_code=200)
    async def search_runs(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        data = await wire.body(request, SearchRuns)
        try:
            experiment_ids = [wire.parse_int(e, "experiment_ids") for e in data.experiment_ids]
        except InvalidInput:
            raise InvalidInput("experiment_ids must be numeric strings of 64-bit integers") from None
        async with db.read() as session:
            found, token = await search.search_runs(
                session,
                experiment_ids=experiment_ids,
                filter=data.filter or "",
                order_by=data.order_by or None,
                max_results=data.max_results or 1000,
                page_token=data.page_token or None,
                view=data.run_view_type or "ACTIVE_ONLY",
            )
            views = [await runs.view(session, run_id=r.id) for r in found]
        result: dict[str, Any] = {"runs": [wire.run_json(v) for v in views]} if views else {}
        if token:
            result["next_page_token"] = token
        return result

    @get("/metrics/get-history")
    async def metric_history(self, request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
        run_id = request.query_params.get("run_id") or wire.query(request, "run_uuid")
        key = wire.query(request, "metric_key")
        requested = wire.query_int(request, "max_results", MAX_HISTORY)
        if requested < 1:
            raise InvalidInput(f"max_results must be positive, got {requested}", field="max_results")
        limit = min(requested, MAX_HISTORY)
        offset = wire.page_offset(request.query_params.get("page_token"))
        async with db.read() as session:
            points = await runs.metric_history(session, run_id=run_id, key=key, limit=limit + 1, offset=offset)
        result: dict[str, Any] = {"metrics": [wire.metric_json(m) for m in points[:limit]]}
        if len(points) > limit:
            result["next_page_token"] = wire.page_token(offset + limit)
        return result

    @post("/logged-models/search", status_code=200)
    async def search_logged_models(self) -> dict[str, Any]:
        """MLflow 3 logged models are not stored here; the client needs an empty answer, not an error."""
        return {}
