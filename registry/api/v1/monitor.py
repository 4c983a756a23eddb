"""Production monitoring: baselines per version, production batches in, the monitor spec, drift checks.

Data bodies (a reference, a batch) are streamed to a spool file, never buffered whole by the server, and are
read and profiled with no transaction held; the rows are written in a short transaction afterwards.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.params import Parameter
from litestar.response import Stream

from monitoring import baselines, checks, ingest, labels, report, service
from monitoring.domain import MonitorBaseline, MonitorCheck, MonitorSpec
from registry.api._bytes import body_chunks
from registry.api.security import MAINTAINER, WRITER
from registry.api.v1._common import clamp_limit, id_or_404, iso
from registry.api.v1.models import version_number
from registry.db import Database
from registry.errors import NotFound
from registry.services import models
from registry.services.auth import Actor
from registry.settings import Settings
from registry.storage import BlobStore

PositiveVersion = Annotated[int | None, Parameter(ge=1, le=2**63 - 1)]


class BaselineOut(msgspec.Struct):
    model: str
    version: int
    rows: int
    digest: str
    source: str
    schema: dict[str, Any]
    created_by: str
    created_at: str | None


class BucketOut(msgspec.Struct):
    start: str
    rows: int


class IngestOut(msgspec.Struct):
    model: str
    version: int
    alias: str | None
    rows: int
    buckets: list[BucketOut]


class SpecIn(msgspec.Struct, forbid_unknown_fields=True):
    spec: str
    """The monitor spec (YAML text)."""


class SpecOut(msgspec.Struct):
    model: str
    spec: str
    digest: str
    created_by: str
    created_at: str | None
    updated_at: str | None


class CheckOut(msgspec.Struct):
    id: int
    model: str
    version: int
    alias: str | None
    status: str
    drift_detected: bool
    window: dict[str, Any]
    rows: int
    reference_rows: int
    drifted: list[str]
    columns: list[dict[str, Any]]
    alert: str | None
    performance: dict[str, Any] | None
    """The gate policy re-tested on the window's labelled rows (None: the window has none): ``status``,
    ``verdict`` (pass, fail, inconclusive), ``labelled``, ``policy_alias``, ``report`` (the gate report) ..."""
    report_status: str | None
    report_url: str | None
    """The check's Evidently HTML report (built on its first request); None when its window had no rows."""
    origin: str
    actor: str
    created_at: str | None


class VersionLabels(msgspec.Struct):
    version: int
    labels: int


class LabelsOut(msgspec.Struct):
    model: str
    rows: int
    id: str
    target: str
    versions: list[VersionLabels]


def render_baseline(model: str, version: int, b: MonitorBaseline) -> BaselineOut:
    return BaselineOut(
        model=model,
        version=version,
        rows=b.rows,
        digest=b.digest,
        source=b.source,
        schema=b.schema,
        created_by=b.created_by,
        created_at=iso(b.created_at),
    )


def render_spec(model: str, s: MonitorSpec) -> SpecOut:
    return SpecOut(
        model=model,
        spec=s.text,
        digest=s.digest,
        created_by=s.created_by,
        created_at=iso(s.created_at),
        updated_at=iso(s.updated_at),
    )


def render_check(model: str, c: MonitorCheck) -> CheckOut:
    r = c.result
    return CheckOut(
        id=c.id,
        model=model,
        version=c.version,
        alias=c.alias,
        status=c.status,
        drift_detected=c.drift_detected,
        window=r["window"],
        rows=c.rows,
        reference_rows=c.reference_rows,
        drifted=list(r.get("drifted", [])),
        columns=list(r.get("columns", [])),
        alert=c.alert,
        performance=r.get("performance"),
        report_status=c.report_status,
        report_url=checks.report_path(model, c.id) if c.report_status is not None else None,
        origin=c.origin,
        actor=c.actor,
        created_at=iso(c.created_at),
    )


def _names(value: str | None) -> tuple[str, ...]:
    """A comma-separated column list from a query parameter."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


class MonitorController(Controller):
    path = "/models/{name:str}"

    @put("/versions/{version:int}/monitor/baseline", guards=WRITER, request_max_body_size=None, status_code=200)
    async def set_baseline(
        self,
        name: str,
        version: int,
        request: Request[Any, Any, Any],
        db: Database,
        store: BlobStore,
        settings: Settings,
        actor: Actor,
        prediction: str | None = None,
        target: str | None = None,
        id: str | None = None,
        timestamp: str | None = None,
        columns: str | None = None,
        exclude: str | None = None,
        categorical: str | None = None,
        numerical: str | None = None,
        artifact: str | None = None,
    ) -> BaselineOut:
        """Bind reference data to the version, once: a streamed Parquet or CSV body, or ``artifact=NAME:VERSION``
        (a dataset artifact version). Column lists are comma-separated."""
        number = version_number(name, version)
        options = baselines.BaselineOptions(
            prediction=prediction,
            target=target,
            id=id,
            timestamp=timestamp,
            columns=_names(columns) or None,
            exclude=_names(exclude),
            categorical=_names(categorical),
            numerical=_names(numerical),
        )
        if artifact is not None:
            baseline = await baselines.baseline_from_artifact(
                db, store, model_name=name, version=number, artifact=artifact, options=options, actor=actor,
                tmp_dir=settings.tmp_dir,
            )  # fmt: skip
        else:
            baseline = await baselines.set_baseline(
                db, store, model_name=name, version=number, chunks=body_chunks(request),
                fmt=service.data_format(request.headers.get("content-type")), options=options, actor=actor,
                tmp_dir=settings.tmp_dir, max_bytes=settings.max_upload_bytes,
            )  # fmt: skip
        return render_baseline(name, number, baseline)

    @get("/versions/{version:int}/monitor/baseline")
    async def get_baseline(self, name: str, version: int, db: Database) -> BaselineOut:
        number = version_number(name, version)
        async with db.read() as session:
            model, found, _ = await service.resolve(session, model_name=name, alias=None, version=number)
            return render_baseline(name, number, await baselines.get_baseline(session, model=model, version=found))

    @post("/monitor/batches", guards=WRITER, request_max_body_size=None, status_code=200)
    async def send_batch(
        self,
        name: str,
        request: Request[Any, Any, Any],
        db: Database,
        store: BlobStore,
        settings: Settings,
        actor: Actor,
        alias: str | None = None,
        version: PositiveVersion = None,
        at: str | None = None,
    ) -> IngestOut:
        """Production rows (streamed Parquet, CSV or JSON lines) of the version ``alias`` points at now, or of
        ``version``; bucketed by the baseline's timestamp column, else ``at``, else the time of arrival."""
        fmt = service.data_format(request.headers.get("content-type"))
        moment = service.parse_time(at, field="at") if at is not None else None
        result = await ingest.ingest(
            db, store, model_name=name, alias=alias, version=version, chunks=body_chunks(request), fmt=fmt,
            at=moment, actor=actor, tmp_dir=settings.tmp_dir, max_bytes=settings.max_upload_bytes,
        )  # fmt: skip
        return IngestOut(
            model=result.model,
            version=result.version,
            alias=result.alias,
            rows=result.rows,
            buckets=[BucketOut(start=start.isoformat(), rows=rows) for start, rows in result.buckets],
        )

    @post("/monitor/labels", guards=WRITER, request_max_body_size=None, status_code=200)
    async def send_labels(
        self,
        name: str,
        request: Request[Any, Any, Any],
        db: Database,
        settings: Settings,
        actor: Actor,
        id: str | None = None,
        target: str | None = None,
    ) -> LabelsOut:
        """Labels that arrived after the predictions (streamed Parquet, CSV or JSON lines of ids and labels),
        joined by id to the production rows of whichever version served them. ``id`` and ``target`` name the
        columns (default: those the baselines name). An id no production row carried is a 400 naming it, and
        nothing is stored."""
        fmt = service.data_format(request.headers.get("content-type"))
        done = await labels.put_labels(
            db, model_name=name, chunks=body_chunks(request), fmt=fmt, id_column=id, target=target, actor=actor,
            tmp_dir=settings.tmp_dir, max_bytes=settings.max_upload_bytes,
        )  # fmt: skip
        return LabelsOut(
            model=done.model,
            rows=done.rows,
            id=done.id_column,
            target=done.target,
            versions=[VersionLabels(version=v, labels=n) for v, n in done.versions.items()],
        )

    @put("/monitor", guards=MAINTAINER, status_code=200)
    async def set_spec(self, name: str, data: SpecIn, db: Database, actor: Actor) -> SpecOut:
        async with db.write() as session:
            return render_spec(name, await service.set_spec(session, model_name=name, text=data.spec, actor=actor))

    @get("/monitor")
    async def get_spec(self, name: str, db: Database) -> SpecOut:
        async with db.read() as session:
            model = await models.get(session, name=name)
            found = await service.get_spec(session, model=model)
        if found is None:
            raise NotFound(f"{name} has no monitor spec (`registry monitor set {name} --spec FILE`)", code="no_spec")
        return render_spec(name, found)

    @post("/monitor/checks", guards=WRITER, status_code=200)
    async def run_check(
        self,
        name: str,
        db: Database,
        store: BlobStore,
        settings: Settings,
        actor: Actor,
        alias: str | None = None,
        version: PositiveVersion = None,
        window: str | None = None,
        end: str | None = None,
    ) -> CheckOut:
        """Run one drift check now; it is stored, and an alias changing state raises its alert."""
        check = await checks.run_check(
            db, store, model_name=name, alias=alias, version=version, window=window,
            end=service.parse_time(end, field="end") if end is not None else None, actor=actor,
            tmp_dir=settings.tmp_dir,
        )  # fmt: skip
        return render_check(name, check)

    @get("/monitor/checks")
    async def list_checks(
        self, name: str, db: Database, alias: str | None = None, version: PositiveVersion = None, limit: int = 50
    ) -> list[CheckOut]:
        async with db.read() as session:
            found = await checks.list_checks(
                session, model_name=name, alias=alias, version=version, limit=clamp_limit(limit)
            )
        return [render_check(name, c) for c in found]

    @get("/monitor/checks/{check_id:int}")
    async def get_check(self, name: str, check_id: int, db: Database) -> CheckOut:
        async with db.read() as session:
            _, check = await checks.get_check(
                session, model_name=name, check_id=id_or_404(check_id, f"{name} monitor check")
            )
        return render_check(name, check)

    @get("/monitor/checks/{check_id:int}/report.html")
    async def check_report(
        self, name: str, check_id: int, db: Database, store: BlobStore, settings: Settings
    ) -> Stream:
        """The check's Evidently HTML report (drift of its window's sampled rows against a sample of the
        reference), built on the first request and kept. Its scripts may run but reach nothing (see the
        Content-Security-Policy)."""
        built = await report.html_report(
            db, store, model_name=name, check_id=id_or_404(check_id, f"{name} monitor check"),
            tmp_dir=settings.tmp_dir,
        )  # fmt: skip
        headers = {
            **report.HEADERS,
            "content-length": str(built.size),
            "x-content-sha256": built.digest,
            "etag": f'"{built.digest}"',
        }
        return Stream(store.stream(built.digest), media_type="text/html; charset=utf-8", headers=headers)

    @get("/monitor/status")
    async def status(self, name: str, db: Database) -> list[CheckOut]:
        """The newest check of each alias."""
        async with db.read() as session:
            found = await checks.latest_per_alias(session, model_name=name)
        return [render_check(name, c) for c in found]
