"""Late labels, and the promotion gate re-tested on them in production.

Production rows that carry the baseline's id column are kept as ``(version, id, hour, prediction)`` when they
arrive (``monitoring.ingest``), so labels that come later join them by id, for every version whose rows carry
that id. A check then evaluates the gate policy of the alias it follows, with the ``gates`` engine unchanged,
on a table of ``id, label, prediction`` built from the window's labelled rows: the claim made at promotion
("accuracy >= 95 % at alpha = 0.05") is tested again, with the same statistics, on what the version served.
A FAIL raises ``monitor.performance_degraded``; INCONCLUSIVE raises nothing (the data cannot tell yet).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from monitoring.domain import MonitorBaseline, MonitorCheck, MonitorLabel, MonitorRow
from monitoring.service import receive
from registry.db import Database
from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.domain.models import ModelVersion, RegisteredModel
from registry.errors import InvalidInput
from registry.services import audit, events, models
from registry.services import gates as gate_policies
from registry.services._sql import statement
from registry.services.auth import Actor, require

if TYPE_CHECKING:
    import pyarrow as pa

    from monitoring.profile import Schema

PERFORMANCE_DEGRADED = "monitor.performance_degraded"
MAX_ID_LENGTH = 256
WRITE_CHUNK = 2000
"""Rows per INSERT: well under SQLite's and PostgreSQL's bound-parameter limits."""
LOOKUP_CHUNK = 500


def _json_value(value: Any) -> Any:
    """A value as JSON can hold it: numbers, text and booleans as they are, NaN and infinities as None,
    anything else (times, decimals, bytes) as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    return str(value)


def _ids(column: pa.ChunkedArray, name: str) -> list[str | None]:
    """Row ids as text (``7`` and ``"7"`` are the same id); InvalidInput naming the column if they are not
    numbers or text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type
    if not (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)):
        if not pa.types.is_dictionary(t):
            raise InvalidInput(
                f"column {name!r} (the row id) must hold integers or text, not {t}", code="schema_mismatch", field=name
            )
    return list(pc.cast(column, pa.string()).to_pylist())


def _check_id(value: str, *, row: int, field: str) -> None:
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput(
            f"row {row}: the id is longer than {MAX_ID_LENGTH} characters", code="invalid_id", field=field, row=row
        )


def row_ids(table: pa.Table, schema: Schema, hours: Any) -> list[dict[str, Any]]:
    """The rows of a production batch to keep for late labels: ``{row_id, bucket_start, prediction}`` for each
    row with an id (none when the baseline names no id column or the batch lacks it). ``hours`` holds each row's
    hour since the epoch. InvalidInput naming the row for an id too long to keep."""
    if schema.id is None or schema.id not in table.column_names:
        return []
    ids = _ids(table.column(schema.id), schema.id)
    prediction = schema.prediction
    predictions: Sequence[Any] = (
        table.column(prediction).to_pylist()
        if prediction is not None and prediction in table.column_names
        else [None] * table.num_rows
    )
    starts: dict[int, datetime] = {}
    kept: list[dict[str, Any]] = []
    for row, (row_id, hour, predicted) in enumerate(zip(ids, hours.tolist(), predictions, strict=True)):
        if row_id is None:
            continue  # nothing can join it
        _check_id(row_id, row=row, field=schema.id)
        start = starts.get(hour)
        if start is None:
            start = starts[hour] = datetime.fromtimestamp(hour * 3600, UTC)
        kept.append({"row_id": row_id, "bucket_start": start, "prediction": _json_value(predicted)})
    return kept


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def keep_rows(session: AsyncSession, *, version_id: int, rows: list[dict[str, Any]]) -> None:
    """Insert a batch's row ids (in the batch's transaction). An id the version already has keeps its first
    row: a batch sent twice does not move it."""
    if not rows:
        return

    def build(dialect_name: str) -> Any:
        from registry.services._sql import insert_for

        stmt = insert_for(dialect_name, MonitorRow.__table__)
        return stmt.on_conflict_do_nothing(index_elements=["model_version_id", "row_id"])

    stmt = statement(session, "monitor_rows", build)
    now = utcnow()
    for chunk in _chunks(rows, WRITE_CHUNK):
        await session.execute(stmt, [{**row, "model_version_id": version_id, "created_at": now} for row in chunk])


# -- labels in ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Labelled:
    model: str
    rows: int
    id_column: str
    target: str
    versions: dict[int, int]
    """Labels stored per version number (an id that rows of two versions carry labels both)."""


def _role(schemas: list[dict[str, Any]], role: str, *, model: str, option: str) -> str:
    """The column the model's baselines name for ``role`` (``id``, ``target``), when they agree."""
    found = sorted({str(s[role]) for s in schemas if s.get(role)})
    if len(found) == 1:
        return found[0]
    if not found:
        why = f"no baseline of {model} names the {role} column"
    else:
        why = f"the baselines of {model} name different {role} columns ({', '.join(found)})"
    raise InvalidInput(f"{why}; name the labels file's {role} column with {option}", field=role)


def _read_labels(table: pa.Table, id_column: str, target: str) -> tuple[list[str], list[Any]]:
    """``(ids, labels)`` in file order. InvalidInput naming the column or row for a missing column, an empty
    id or label, or an id given twice."""
    for name, what in ((id_column, "the row id"), (target, "the label")):
        if name not in table.column_names:
            raise InvalidInput(f"column {name!r} ({what}) is missing", code="schema_mismatch", field=name)
    ids = _ids(table.column(id_column), id_column)
    labels = [_json_value(v) for v in table.column(target).to_pylist()]
    seen: dict[str, int] = {}
    for row, (row_id, label) in enumerate(zip(ids, labels, strict=True)):
        if row_id is None:
            raise InvalidInput(f"row {row}: the id is empty", code="invalid_id", field=id_column, row=row)
        _check_id(row_id, row=row, field=id_column)
        if label is None:
            raise InvalidInput(f"row {row}: the label of id {row_id!r} is empty", field=target, row=row)
        first = seen.setdefault(row_id, row)
        if first != row:
            raise InvalidInput(
                f"row {row}: id {row_id!r} is labelled twice (rows {first} and {row})",
                code="duplicate_id",
                field=id_column,
                row=row,
            )
    return [i for i in ids if i is not None], labels


async def put_labels(
    db: Database,
    *,
    model_name: str,
    chunks: AsyncIterable[bytes],
    fmt: str,
    id_column: str | None,
    target: str | None,
    actor: Actor,
    tmp_dir: Path,
    max_bytes: int,
) -> Labelled:
    """Store labels (a streamed Parquet, CSV or JSON-lines body of ids and labels) for the production rows that
    carried those ids, of whichever version served them. Writers.

    The columns default to the id and target columns the model's baselines name. Stores nothing on any error:
    an id that no production row of the model carried is InvalidInput (``unknown_id``) naming the first such
    id and its row, as are a missing column, an empty id or label and an id given twice. A label sent again for
    an id replaces the earlier one."""
    require(actor, Role.writer, action="sending labels")
    async with db.read() as session:  # fail fast, before reading any bytes
        model = await models.get(session, name=model_name)
        schemas = list(
            await session.scalars(
                select(MonitorBaseline.schema)
                .join(ModelVersion, ModelVersion.id == MonitorBaseline.model_version_id)
                .where(ModelVersion.model_id == model.id)
            )
        )
    id_column = id_column or _role(schemas, "id", model=model.name, option="--id (id=)")
    target = target or _role(schemas, "target", model=model.name, option="--target (target=)")
    try:
        table, _ = await receive(chunks, fmt=fmt, tmp_dir=tmp_dir, max_bytes=max_bytes)
    except InvalidInput as exc:
        if exc.message == "the batch has no rows":
            raise InvalidInput("the labels file has no rows", code="empty_batch") from None
        raise
    ids, labels = await anyio.to_thread.run_sync(_read_labels, table, id_column, target)
    carriers: dict[str, list[tuple[int, int]]] = {}
    async with db.read() as session:
        for chunk in _chunks(ids, LOOKUP_CHUNK):
            found = await session.execute(
                select(MonitorRow.row_id, MonitorRow.model_version_id, ModelVersion.version)
                .join(ModelVersion, ModelVersion.id == MonitorRow.model_version_id)
                .where(ModelVersion.model_id == model.id, MonitorRow.row_id.in_(chunk))
            )
            for row_id, version_id, number in found:
                carriers.setdefault(row_id, []).append((version_id, number))
    for row, row_id in enumerate(ids):
        if row_id not in carriers:
            raise InvalidInput(
                f"row {row}: id {row_id!r} matches no production row of {model.name} (labels join the rows sent "
                f"with `registry monitor ingest` on the baseline's id column); nothing was stored",
                code="unknown_id",
                field=id_column,
                row=row,
                row_id=row_id,
            )
    now = utcnow()
    values = [
        {"model_version_id": version_id, "row_id": row_id, "label": label, "created_at": now}
        for row_id, label in zip(ids, labels, strict=True)
        for version_id, _ in carriers[row_id]
    ]
    per_version: dict[int, int] = {}
    for row_id in ids:
        for _, number in carriers[row_id]:
            per_version[number] = per_version.get(number, 0) + 1

    def build(dialect_name: str) -> Any:
        from registry.services._sql import insert_for

        stmt = insert_for(dialect_name, MonitorLabel.__table__)
        return stmt.on_conflict_do_update(
            index_elements=["model_version_id", "row_id"],
            set_={"label": stmt.excluded.label, "created_at": stmt.excluded.created_at},
        )

    async with db.write() as session:
        stmt = statement(session, "monitor_labels", build)
        for chunk in _chunks(values, WRITE_CHUNK):
            await session.execute(stmt, list(chunk))
        details = {
            "model": model.name,
            "rows": len(ids),
            "id": id_column,
            "target": target,
            "versions": {str(k): v for k, v in sorted(per_version.items())},
        }
        await audit.log(session, action="monitor.labels_set", actor=actor.name, target=model.name, details=details)
    return Labelled(
        model=model.name, rows=len(ids), id_column=id_column, target=target, versions=dict(sorted(per_version.items()))
    )


# -- performance on labelled rows -----------------------------------------------------------------------
async def labelled_rows(
    session: AsyncSession, *, version_id: int, start: datetime | None, end: datetime
) -> list[tuple[str, Any, Any]]:
    """``(id, label, prediction)`` of the version's labelled rows in buckets starting in ``[start, end)``."""
    joined = and_(
        MonitorLabel.model_version_id == MonitorRow.model_version_id, MonitorLabel.row_id == MonitorRow.row_id
    )
    query = (
        select(MonitorRow.row_id, MonitorLabel.label, MonitorRow.prediction)
        .join(MonitorLabel, joined)
        .where(MonitorRow.model_version_id == version_id, MonitorRow.bucket_start < end)
    )
    if start is not None:
        query = query.where(MonitorRow.bucket_start >= start)
    return [(r[0], r[1], r[2]) for r in await session.execute(query.order_by(MonitorRow.id))]


def _column(values: list[Any]) -> pa.Array:
    """A column of JSON values: typed when they share a type, else as text (the gates engine compares a
    prediction and a label of different types as text)."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def gate_verdict(statuses: Sequence[str]) -> str:
    """The monitor's reading of a gate report: ``fail`` when any gate FAILs (the data show the requirement is
    violated), ``pass`` when every gate PASSes, else ``inconclusive``. ``on_inconclusive`` is a promotion rule
    ("never promote without evidence"), so it does not turn too few labels into a FAIL here."""
    if "FAIL" in statuses:
        return "fail"
    return "pass" if statuses and all(s == "PASS" for s in statuses) else "inconclusive"


def _evaluate_gates(spec_text: str, rows: list[tuple[str, Any, Any]]) -> dict[str, Any]:
    import gates
    from gates.spec import PairedGate

    try:
        spec = gates.load_spec(spec_text)
    except gates.GateError as exc:
        return {"status": "error", "message": f"gate spec: {exc}"}
    kept = tuple(g for g in spec.gates if not isinstance(g, PairedGate))
    skipped = [g.id for g in spec.gates if isinstance(g, PairedGate)]
    if not kept:
        return {
            "status": "no_gates",
            "skipped_gates": skipped,
            "message": "every gate of the policy compares with another version (paired), which needs that "
            "version's predictions on the same rows",
        }
    if all(prediction is None for _, _, prediction in rows):
        return {
            "status": "error",
            "skipped_gates": skipped,
            "message": "the labelled rows have no prediction (the baseline names no prediction column, or the "
            "batches left it empty)",
        }
    import pyarrow as pa

    label, predicted = _column([r[1] for r in rows]), _column([r[2] for r in rows])
    numeric = (pa.types.is_integer(t) or pa.types.is_floating(t) for t in (label.type, predicted.type))
    if all(numeric) and label.type != predicted.type:  # 1 and 1.0 are the same class, not "1" and "1.0"
        label, predicted = label.cast(pa.float64()), predicted.cast(pa.float64())
    table = pa.table({"id": pa.array([r[0] for r in rows], pa.string()), "label": label, "prediction": predicted})
    try:
        report = gates.evaluate(dataclasses.replace(spec, gates=kept), table)
    except gates.GateError as exc:
        return {"status": "error", "skipped_gates": skipped, "message": f"gate evaluation: {exc}"}
    return {
        "status": "evaluated",
        "verdict": gate_verdict([g.status for g in report.gates]),
        "skipped_gates": skipped,
        "report": report.to_dict(),
    }


async def performance(
    db: Database,
    *,
    model: RegisteredModel,
    version_id: int,
    alias: str | None,
    policy_alias: str,
    start: datetime | None,
    end: datetime,
) -> dict[str, Any] | None:
    """The gate policy of ``policy_alias`` evaluated on the version's labelled rows of the window; None when
    the window has no labelled row. ``verdict`` is ``pass``, ``fail`` or ``inconclusive`` when the policy could
    be evaluated (``status`` ``evaluated``), else None with ``status`` ``no_policy``, ``no_gates`` or
    ``error`` and a ``message``; ``alert`` names the event a FAIL of a check that follows an alias raises."""
    async with db.read() as session:
        rows = await labelled_rows(session, version_id=version_id, start=start, end=end)
        if not rows:
            return None
        policy = await gate_policies.get_policy(session, model=model, alias=policy_alias)
    found: dict[str, Any] = {
        "status": "no_policy",
        "verdict": None,
        "labelled": len(rows),
        "policy_alias": policy_alias,
        "spec_digest": None,
        "skipped_gates": [],
        "message": None,
        "report": None,
        "alert": None,
    }
    if policy is None:
        found["message"] = f"{model.name}@{policy_alias} has no gate policy to re-test"
        return found
    found["spec_digest"] = policy.spec_digest
    found.update(await anyio.to_thread.run_sync(_evaluate_gates, policy.spec, rows))
    if found["verdict"] == "fail" and alias is not None:
        found["alert"] = PERFORMANCE_DEGRADED
    return found


async def alert(
    session: AsyncSession, *, model: RegisteredModel, check: MonitorCheck, found: dict[str, Any], actor: Actor
) -> None:
    """Write ``monitor.performance_degraded`` for a check whose performance FAILed (``found["alert"]``)."""
    if found.get("alert") != PERFORMANCE_DEGRADED:
        return
    from monitoring.checks import check_path, report_path

    report = found.get("report") or {}
    failing = [
        {
            key: r.get(key)
            for key in ("gate_id", "kind", "slice", "estimate", "threshold", "direction", "n", "p_value_fail_adjusted")
        }
        for r in report.get("results", [])
        if r.get("status") == "FAIL"
    ]
    path = check_path(model.name, check.id)
    await events.record(
        session,
        type=PERFORMANCE_DEGRADED,
        subject=f"models/{model.name}/monitor/checks/{check.id}",
        actor=actor.name,
        model=model.name,
        data={
            "model": model.name,
            "version": check.version,
            "alias": check.alias,
            "check_id": check.id,
            "window": check.result["window"],
            "labelled": found["labelled"],
            "verdict": found["verdict"],
            "policy_alias": found["policy_alias"],
            "spec_digest": found["spec_digest"],
            "failing": failing,
            "check_url": path,
            "report_url": report_path(model.name, check.id) if check.report_status is not None else None,
        },
    )
