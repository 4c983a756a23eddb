"""Drift checks: a version's production profiles in a window against its baseline, stored, with alerts.

A check follows an alias (``production``) or names a version. The alias is resolved when the check runs, and
only that version's buckets are compared with that version's baseline: after a promotion, checks compare the
new version's rows with the new version's baseline. Nothing mixes versions.

Alerts are transitions of an alias, not states: ``drift.detected`` when its last conclusive check (one with
enough rows) found no drift, or was about another version, and this one finds drift; ``drift.resolved`` when
the last one found drift and this one does not. A drift that persists raises nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from monitoring import baselines, ingest, labels, service
from monitoring.domain import MonitorCheck
from registry import observability
from registry.db import Database
from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.domain.models import RegisteredModel
from registry.errors import InvalidInput, NotFound
from registry.services import events, models
from registry.services.auth import Actor, require
from registry.storage import BlobStore

if TYPE_CHECKING:
    from monitoring.profile import TableProfile
    from monitoring.spec import CheckResult
    from monitoring.spec import MonitorSpec as Spec

INSUFFICIENT = "insufficient_data"
DETECTED, RESOLVED = "drift.detected", "drift.resolved"


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime


def _evaluate(
    reference_bytes: bytes, schema_json: dict[str, Any], buckets: list[bytes], spec: Spec
) -> tuple[int, int, CheckResult | None]:
    """``(rows, reference rows, result)``; the result is None below the spec's ``min_rows``."""
    from monitoring.profile import Schema, TableProfile
    from monitoring.spec import SpecError, check

    reference = TableProfile.from_bytes(reference_bytes)
    current: TableProfile | None = None
    for payload in buckets:
        profile = TableProfile.from_bytes(payload)
        current = profile if current is None else current.merge(profile)
    rows = current.rows if current is not None else 0
    if current is None or rows < spec.min_rows:
        return rows, reference.rows, None
    try:
        return rows, reference.rows, check(reference, current, Schema.from_json(schema_json), spec)
    except SpecError as exc:  # a column rule whose method does not fit this version's column
        raise service.spec_error(exc) from None


def check_path(model: str, check_id: int) -> str:
    return f"/api/v1/models/{quote(model, safe='')}/monitor/checks/{check_id}"


def report_path(model: str, check_id: int) -> str:
    """Where the check's HTML report is served (built on its first request)."""
    return f"{check_path(model, check_id)}/report.html"


async def _previous(
    session: AsyncSession, *, model_id: int, alias: str | None, version_id: int, conclusive: bool
) -> MonitorCheck | None:
    """The newest check of the alias (of the version, for a check by number); only those with enough rows
    when ``conclusive``."""
    query = select(MonitorCheck).where(MonitorCheck.model_id == model_id)
    if alias is not None:
        query = query.where(MonitorCheck.alias == alias)
    else:
        query = query.where(MonitorCheck.model_version_id == version_id, MonitorCheck.alias.is_(None))
    if conclusive:
        query = query.where(MonitorCheck.status != INSUFFICIENT)
    return await session.scalar(query.order_by(MonitorCheck.id.desc()).limit(1))


async def _window(
    session: AsyncSession, *, model_id: int, alias: str | None, version_id: int, length: timedelta | None, end: datetime
) -> tuple[datetime | None, datetime]:
    """The buckets a check reads start in ``[start, end)``. Buckets are whole UTC hours, so a window starts on
    the hour that holds ``end - length``; ``since last check`` starts on the hour that held the last check's end
    (its rows may be read twice: buckets are never split) or, for a first check, takes every bucket."""
    if length is not None:
        return service.bucket_of(end - length), end
    previous = await _previous(session, model_id=model_id, alias=alias, version_id=version_id, conclusive=False)
    return (service.bucket_of(previous.window_end) if previous is not None else None), end


def report(
    *,
    model: str,
    version: int,
    alias: str | None,
    window: Window,
    rows: int,
    reference_rows: int,
    result: CheckResult | None,
    spec: Spec,
) -> dict[str, Any]:
    """The check as stored and listed, and as ``registry monitor check --report-json`` writes it."""
    columns = [c.to_dict() for c in result.columns] if result is not None else []
    return {
        "model": model,
        "version": version,
        "alias": alias,
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
        "rows": rows,
        "reference_rows": reference_rows,
        "status": INSUFFICIENT if result is None else ("drift" if result.drift_detected else "ok"),
        "drift_detected": bool(result is not None and result.drift_detected),
        "drifted": list(result.drifted) if result is not None else [],
        "skipped": list(result.skipped) if result is not None else [],
        "min_rows": spec.min_rows,
        "columns": columns,
    }


async def run_check(
    db: Database,
    store: BlobStore | None,
    *,
    model_name: str,
    alias: str | None,
    version: int | None,
    window: str | None = None,
    end: datetime | None = None,
    actor: Actor,
    origin: str = "api",
    tmp_dir: Path,
) -> MonitorCheck:
    """Run one drift check now and store it (with its alert, if the alias changed state). Writers.

    ``window`` (``1h``, ``1d``, ``since last check``) overrides the spec's; ``end`` defaults to now. Raises
    NotFound for an unknown model, version or alias, or a version without a baseline (``no_baseline``)."""
    require(actor, Role.writer, action="running a drift check")
    now = utcnow()
    end = end or now
    if end > now + service.MAX_FUTURE:
        raise InvalidInput(f"end {end.isoformat()} is in the future", field="end")
    async with db.read() as session:
        model, found, alias = await service.resolve(session, model_name=model_name, alias=alias, version=version)
        spec_row = await service.get_spec(session, model=model)
    spec = service.load_spec(spec_row.text if spec_row is not None else service.DEFAULT_SPEC)
    length = service.parse_window(window) if window is not None else spec.window
    baseline = await baselines.baseline_or_lineage(
        db, store, model_name=model.name, version=found.version, tmp_dir=tmp_dir
    )
    async with db.read() as session:
        start, end = await _window(session, model_id=model.id, alias=alias, version_id=found.id, length=length, end=end)
        buckets = await ingest.buckets_in(session, version_id=found.id, start=start, end=end)
    payloads = [b.profile for b in buckets]
    samples = [b.sample_digest for b in buckets if b.sample_digest is not None]
    rows, reference_rows, result = await anyio.to_thread.run_sync(
        _evaluate, baseline.profile, baseline.schema, payloads, spec
    )
    span = Window(start=start or (buckets[0].bucket_start if buckets else end), end=end)
    body = report(
        model=model.name, version=found.version, alias=alias, window=span, rows=rows,
        reference_rows=reference_rows, result=result, spec=spec,
    )  # fmt: skip
    # The promotion gate re-tested on the window's labelled rows, when it has any (see monitoring.labels).
    body["performance"] = await labels.performance(
        db, model=model, version_id=found.id, alias=alias, policy_alias=alias or spec.alias, start=start, end=end
    )
    async with db.write() as session:
        # The model's row lock serialises checks of one model, so two replicas checking the same alias at once
        # cannot both see "no drift before" and both raise drift.detected.
        locked = await models.lock(session, name=model.name)
        previous = await _previous(session, model_id=locked.id, alias=alias, version_id=found.id, conclusive=True)
        check = MonitorCheck(
            model_id=locked.id,
            model_version_id=found.id,
            version=found.version,
            alias=alias,
            window_start=span.start,
            window_end=span.end,
            rows=rows,
            reference_rows=reference_rows,
            status=body["status"],
            drift_detected=body["drift_detected"],
            result=body,
            spec_digest=spec.digest,
            report_status="pending" if samples else None,
            report_samples=samples or None,
            origin=origin,
            actor=actor.name,
        )
        session.add(check)
        await session.flush()
        check.alert = await _alert(session, model=locked, check=check, previous=previous, result=result, actor=actor)
        if body["performance"] is not None:
            await labels.alert(session, model=locked, check=check, found=body["performance"], actor=actor)
    observability.metrics().monitor_checks.labels(str(body["status"])).inc()
    return check


async def _alert(
    session: AsyncSession,
    *,
    model: RegisteredModel,
    check: MonitorCheck,
    previous: MonitorCheck | None,
    result: CheckResult | None,
    actor: Actor,
) -> str | None:
    """Write ``drift.detected`` / ``drift.resolved`` when the alias changed state; returns the event type."""
    if check.alias is None or result is None:
        return None  # by-number checks are ad hoc; too few rows say nothing either way
    was_drifting = previous is not None and previous.drift_detected
    if result.drift_detected and (not was_drifting or (previous is not None and previous.version != check.version)):
        kind = DETECTED
    elif not result.drift_detected and was_drifting:
        kind = RESOLVED
    else:
        return None
    drifted = [
        {"column": c.column, "type": c.type, "method": c.method, "statistic": c.statistic, "threshold": c.threshold}
        for c in result.columns
        if c.drifted
    ]
    data = {
        "model": model.name,
        "version": check.version,
        "alias": check.alias,
        "check_id": check.id,
        "window": check.result["window"],
        "rows": check.rows,
        "reference_rows": check.reference_rows,
        "drifted": drifted,
        "check_url": check_path(model.name, check.id),
        "report_url": report_path(model.name, check.id) if check.report_status is not None else None,
        "previous_check_id": previous.id if previous is not None else None,
    }
    await events.record(
        session,
        type=kind,
        subject=f"models/{model.name}/monitor/checks/{check.id}",
        actor=actor.name,
        model=model.name,
        data=data,
    )
    return kind


async def get_check(session: AsyncSession, *, model_name: str, check_id: int) -> tuple[RegisteredModel, MonitorCheck]:
    model = await models.get(session, name=model_name)
    check = await session.get(MonitorCheck, check_id)
    if check is None or check.model_id != model.id:
        raise NotFound(f"{model_name} has no monitor check {check_id}")
    return model, check


async def list_checks(
    session: AsyncSession, *, model_name: str, alias: str | None = None, version: int | None = None, limit: int = 50
) -> list[MonitorCheck]:
    """The model's checks, newest first (of one alias or version if given)."""
    model = await models.get(session, name=model_name)
    query = select(MonitorCheck).where(MonitorCheck.model_id == model.id)
    if alias is not None:
        query = query.where(MonitorCheck.alias == alias.lower())
    if version is not None:
        query = query.where(MonitorCheck.version == version)
    return list(await session.scalars(query.order_by(MonitorCheck.id.desc()).limit(limit)))


async def latest_per_alias(session: AsyncSession, *, model_name: str) -> list[MonitorCheck]:
    """The newest check of each alias the model's checks followed, by alias name."""
    model = await models.get(session, name=model_name)
    newest = (
        select(func.max(MonitorCheck.id))
        .where(MonitorCheck.model_id == model.id, MonitorCheck.alias.is_not(None))
        .group_by(MonitorCheck.alias)
    )
    found = await session.scalars(select(MonitorCheck).where(MonitorCheck.id.in_(newest)))
    return sorted(found, key=lambda c: c.alias or "")
