"""Experiments and runs: create, log params/metrics/tags in batches, finish, read back."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, get, patch, post
from litestar.params import Parameter

from registry.api.security import WRITER
from registry.api.v1._common import (
    INT64_MAX,
    INT64_MIN,
    EpochMs,
    Int64,
    Offset,
    Page,
    QueryInt64,
    clamp_limit,
    id_or_404,
    iso,
    path_param,
)
from registry.db import Database
from registry.domain.experiments import Experiment
from registry.services import artifacts, experiments, runs
from registry.services.auth import Actor


class ExperimentIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    tags: dict[str, str] = {}


class ExperimentOut(msgspec.Struct):
    id: int
    name: str
    lifecycle_stage: str
    created_at: str | None


class GitIn(msgspec.Struct, forbid_unknown_fields=True):
    commit: str | None = None
    branch: str | None = None
    remote: str | None = None
    dirty: bool | None = None
    diff_sha256: str | None = None
    untracked: list[str] | None = None


class RunIn(msgspec.Struct, forbid_unknown_fields=True):
    experiment_id: Int64 | None = None
    experiment: str | None = None
    name: str | None = None
    user: str | None = None
    start_time: EpochMs | None = None
    tags: dict[str, str] = {}
    git: GitIn | None = None
    environment: dict[str, Any] | None = None


class RunPatch(msgspec.Struct, forbid_unknown_fields=True):
    status: str | None = None
    end_time: EpochMs | None = None
    name: str | None = None


class MetricIn(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    value: float
    step: Int64 = 0
    timestamp: Int64 | None = None


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    params: dict[str, str] = {}
    metrics: list[MetricIn] = []
    tags: dict[str, str] = {}


class InputIn(msgspec.Struct, forbid_unknown_fields=True):
    artifact: str
    version: Int64
    context: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class MetricOut(msgspec.Struct):
    key: str
    value: float
    step: int
    timestamp: int


class ArtifactRef(msgspec.Struct):
    name: str
    version: int
    kind: str
    digest: str


class GitOut(msgspec.Struct):
    commit: str | None
    branch: str | None
    remote: str | None
    dirty: bool | None
    diff_sha256: str | None
    untracked: list[str] | None


class RunOut(msgspec.Struct):
    id: str
    experiment_id: int
    name: str
    user: str
    status: str
    start_time: str | None
    end_time: str | None
    lifecycle_stage: str
    git: GitOut
    environment: dict[str, Any] | None
    params: dict[str, str] = {}
    tags: dict[str, str] = {}
    metrics: list[MetricOut] = []
    inputs: list[ArtifactRef] = []


def render_experiment(e: Experiment) -> ExperimentOut:
    return ExperimentOut(id=e.id, name=e.name, lifecycle_stage=e.lifecycle_stage, created_at=iso(e.created_at))


def render_run(view: runs.RunView) -> RunOut:
    r = view.run
    return RunOut(
        id=r.id,
        experiment_id=r.experiment_id,
        name=r.name,
        user=r.user,
        status=r.status,
        start_time=iso(r.start_time),
        end_time=iso(r.end_time),
        lifecycle_stage=r.lifecycle_stage,
        git=GitOut(
            commit=r.git_commit,
            branch=r.git_branch,
            remote=r.git_remote,
            dirty=r.git_dirty,
            diff_sha256=r.git_diff_sha256,
            untracked=r.git_untracked,
        ),
        environment=r.environment,
        params=view.params,
        tags=view.tags,
        metrics=[MetricOut(key=m.key, value=m.value, step=m.step, timestamp=m.timestamp) for m in view.metrics],
        inputs=[ArtifactRef(name=a.name, version=a.version, kind=a.kind, digest=a.digest) for a in view.inputs],
    )


class ExperimentsController(Controller):
    path = "/experiments"

    @post("/", guards=WRITER, status_code=201)
    async def create_experiment(self, data: ExperimentIn, db: Database, actor: Actor) -> ExperimentOut:
        async with db.write() as session:
            return render_experiment(await experiments.create(session, name=data.name, actor=actor, tags=data.tags))

    @get("/")
    async def list_experiments(self, db: Database, after: QueryInt64 = -1, limit: int = 100) -> Page[ExperimentOut]:
        async with db.read() as session:
            rows = await experiments.list_experiments(session, limit=clamp_limit(limit), after=after)
            items = [render_experiment(e) for e in rows]
        return Page(items=items, next=str(items[-1].id) if len(items) == limit else None)

    @get("/{experiment_id:int}")
    async def get_experiment(self, experiment_id: int, db: Database) -> ExperimentOut:
        async with db.read() as session:
            return render_experiment(
                await experiments.get(session, experiment_id=id_or_404(experiment_id, "experiment"))
            )


class RunsController(Controller):
    path = "/runs"

    @post("/", guards=WRITER, status_code=201)
    async def create_run(self, data: RunIn, db: Database, actor: Actor) -> RunOut:
        git = runs.GitInfo(**msgspec.structs.asdict(data.git)) if data.git else None
        if git and git.diff_sha256:
            artifacts.check_digest(git.diff_sha256)
        async with db.write() as session:
            run = await runs.create(
                session,
                actor=actor,
                experiment_id=data.experiment_id,
                experiment_name=data.experiment,
                name=data.name,
                user=data.user,
                start_time=data.start_time,
                tags=data.tags,
                git=git,
                environment=data.environment,
            )
            return render_run(await runs.view(session, run_id=run.id))

    @get("/")
    async def list_runs(
        self,
        db: Database,
        experiment_id: Annotated[int | None, Parameter(ge=INT64_MIN, le=INT64_MAX)] = None,
        limit: int = 100,
        offset: Offset = 0,
    ) -> Page[str]:
        async with db.read() as session:
            rows = await runs.list_runs(session, experiment_id=experiment_id, limit=clamp_limit(limit), offset=offset)
        return Page(items=[r.id for r in rows], next=str(offset + limit) if len(rows) == limit else None)

    @get("/{run_id:str}")
    async def get_run(self, run_id: str, db: Database) -> RunOut:
        async with db.read(short=True) as session:
            return render_run(await runs.view(session, run_id=run_id))

    @patch("/{run_id:str}", guards=WRITER)
    async def update_run(self, run_id: str, data: RunPatch, db: Database, actor: Actor) -> RunOut:
        async with db.write() as session:
            await runs.update(
                session,
                run_id=run_id,
                actor=actor,
                status=data.status,
                end_time=data.end_time,
                name=data.name,
            )
            return render_run(await runs.view(session, run_id=run_id))

    @post("/{run_id:str}/log-batch", guards=WRITER, status_code=200)
    async def log_batch(self, run_id: str, data: BatchIn, db: Database) -> dict[str, int]:
        now = runs.now_ms()
        points = [
            runs.MetricPoint(
                key=m.key,
                value=m.value,
                step=m.step,
                timestamp=m.timestamp if m.timestamp is not None else now,
            )
            for m in data.metrics
        ]
        async with db.write() as session:
            await runs.log_batch(
                session,
                run_id=run_id,
                params=list(data.params.items()),
                metrics=points,
                tags=list(data.tags.items()),
            )
        return {"params": len(data.params), "metrics": len(points), "tags": len(data.tags)}

    @get("/{run_id:str}/metrics/{key:path}")
    async def metric_history(
        self, run_id: str, key: str, db: Database, limit: int = 25_000, offset: Offset = 0
    ) -> Page[MetricOut]:
        async with db.read() as session:
            rows = await runs.metric_history(
                session,
                run_id=run_id,
                key=path_param(key),
                limit=clamp_limit(limit, maximum=100_000),
                offset=offset,
            )
        items = [MetricOut(key=m.key, value=m.value, step=m.step, timestamp=m.timestamp) for m in rows]
        return Page(items=items, next=str(offset + limit) if len(items) == limit else None)

    @post("/{run_id:str}/inputs", guards=WRITER, status_code=200)
    async def record_input(self, run_id: str, data: InputIn, db: Database) -> RunOut:
        """Lineage: record that this run consumed an artifact version (a dataset, usually)."""
        async with db.write() as session:
            artifact = await artifacts.get_version(session, name=data.artifact, version=data.version)
            await runs.record_input(session, run_id=run_id, artifact=artifact, context=data.context)
            return render_run(await runs.view(session, run_id=run_id))
