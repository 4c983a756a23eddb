"""Production monitoring: what its use cases share (reading data bodies, resolving versions, times) and
the monitor spec.

Baselines are in ``monitoring.baselines``, production batches in ``monitoring.ingest``, drift checks and their
alerts in ``monitoring.checks``. The use cases that read data own their transactions (read, parse and profile
outside any transaction, write in a short one), so a large batch never holds the database. numpy, pyarrow
and the profile code are imported where data is read: an API process that never receives a batch stays small.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from monitoring.domain import MonitorSpec
from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.domain.models import ModelVersion, RegisteredModel
from registry.errors import InvalidInput
from registry.services import aliases, audit, events, models, names, versions
from registry.services.auth import Actor, require
from registry.storage.spool import spool

if TYPE_CHECKING:
    import pyarrow as pa

    from monitoring.spec import MonitorSpec as Spec

MAX_FUTURE = timedelta(minutes=5)
"""Rows stamped later than this ahead of the server's clock are refused: a wrong clock or time zone upstream,
which would otherwise fill buckets that no check has reached yet."""
MAX_BATCH_BYTES = 256 * 1024 * 1024
"""A batch is read whole to be profiled, so it is capped below ``MODELKEEP_MAX_UPLOAD_BYTES``; send more rows
as more batches (they merge)."""
MEDIA_TYPES = {
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/jsonlines": "jsonl",
    "application/x-jsonlines": "jsonl",
}
DATA_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


# -- reading data ---------------------------------------------------------------------------------------
def data_format(content_type: str | None) -> str:
    """``parquet``, ``csv`` or ``jsonl`` for a request's content type; InvalidInput naming the accepted ones."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    found = MEDIA_TYPES.get(media)
    if found is None:
        accepted = "application/vnd.apache.parquet, text/csv or application/x-ndjson (JSON lines)"
        raise InvalidInput(
            f"content type {media or 'none'!r} is not a data format; send {accepted}",
            code="unsupported_media_type",
            field="content-type",
        )
    return found


def read_file(path: Path, fmt: str) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.json
    import pyarrow.parquet

    if path.stat().st_size == 0:
        raise InvalidInput("the body is empty (no bytes)", code="empty_batch")
    try:
        if fmt == "parquet":
            return pyarrow.parquet.read_table(path)
        if fmt == "csv":
            return pyarrow.csv.read_csv(path)
        return pyarrow.json.read_json(path)
    except (pa.ArrowException, OSError) as exc:
        name = {"parquet": "Parquet", "csv": "CSV", "jsonl": "JSON lines"}[fmt]
        raise InvalidInput(f"cannot read the data as {name}: {exc}", code="unreadable_data") from None


async def receive(chunks: AsyncIterable[bytes], *, fmt: str, tmp_dir: Path, max_bytes: int) -> tuple[pa.Table, str]:
    """Spool a streamed body to a temp file and read it as a table; returns ``(table, sha256 of the bytes)``.

    Raises PayloadTooLarge past ``max_bytes`` (capped at MAX_BATCH_BYTES) and InvalidInput for an empty or
    unreadable body. The temp file is gone afterwards in every case."""
    spooled = await spool(chunks, tmp_dir=tmp_dir, max_bytes=min(max_bytes, MAX_BATCH_BYTES), direct=False)
    try:
        table = await anyio.to_thread.run_sync(read_file, spooled.path, fmt)
    finally:
        spooled.discard()
    if table.num_rows == 0:
        raise InvalidInput("the batch has no rows", code="empty_batch")
    return table, spooled.sha256


def profile_error(exc: Exception, what: str) -> InvalidInput:
    """A profiling error as InvalidInput naming the column at fault, when it names one."""
    return InvalidInput(f"{what}: {exc}", code="schema_mismatch", field=getattr(exc, "column", None))


async def get_version(session: AsyncSession, *, model_name: str, version: int) -> tuple[RegisteredModel, ModelVersion]:
    model = await models.get(session, name=model_name)
    return model, await versions.get(session, model=model, version=version)


async def resolve(
    session: AsyncSession, *, model_name: str, alias: str | None, version: int | None
) -> tuple[RegisteredModel, ModelVersion, str | None]:
    """The version an alias points at *now* (or a version by number): exactly one of the two."""
    if (alias is None) == (version is None):
        raise InvalidInput("name either alias or version (alias=production, or version=3)", field="alias")
    if alias is not None:
        model, found = await aliases.resolve(session, model_name=model_name, alias=alias)
        return model, found, names.alias(alias)
    assert version is not None
    model, found = await get_version(session, model_name=model_name, version=version)
    return model, found, None


def parse_time(value: str, *, field: str) -> datetime:
    """An ISO 8601 moment; without an offset it is read as UTC."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"{field} {value!r} is not an ISO 8601 time (2024-05-01T12:00:00Z)", field=field) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def bucket_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# -- monitor specs --------------------------------------------------------------------------------------
def load_spec(text: str) -> Spec:
    """Parse a monitor spec; its errors become InvalidInput naming the key at fault."""
    from monitoring.spec import SpecError
    from monitoring.spec import load_spec as parse

    try:
        return parse(text)
    except SpecError as exc:
        raise spec_error(exc) from None


def spec_error(exc: Exception) -> InvalidInput:
    """A ``SpecError`` as InvalidInput naming the key at fault (``columns.amount.method``)."""
    key = getattr(exc, "key", None)
    return InvalidInput(f"monitor spec: {exc}", code="invalid_spec", field=key or "spec")


DEFAULT_SPEC = "version: 1\n"


async def set_spec(session: AsyncSession, *, model_name: str, text: str, actor: Actor) -> MonitorSpec:
    """Set the model's monitor spec. Maintainers; audited."""
    require(actor, Role.maintainer, action="setting a monitor spec")
    spec = load_spec(text)
    model = await models.lock(session, name=model_name)
    row = await session.scalar(select(MonitorSpec).where(MonitorSpec.model_id == model.id))
    if row is None:
        row = MonitorSpec(model_id=model.id, text=text, digest=spec.digest, created_by=actor.name)
        session.add(row)
    else:
        row.text, row.digest, row.created_by, row.updated_at = text, spec.digest, actor.name, utcnow()
    await session.flush()
    data = {"model": model.name, "digest": spec.digest, "schedule": spec.schedule, "alias": spec.alias}
    await audit.log(session, action="monitor.spec_set", actor=actor.name, target=model.name, details=data)
    await events.record(
        session, type="monitor.spec_set", subject=f"models/{model.name}/monitor", actor=actor.name,
        model=model.name, data=data,
    )  # fmt: skip
    return row


async def get_spec(session: AsyncSession, *, model: RegisteredModel) -> MonitorSpec | None:
    return await session.scalar(select(MonitorSpec).where(MonitorSpec.model_id == model.id))


def parse_window(text: str) -> timedelta | None:
    """``30m``, ``1h``, ``6h``, ``1d``, ``7d``, ``2w``; ``since last check`` is None. As the spec reads it."""
    from monitoring.spec import SpecError
    from monitoring.spec import parse_window as parse

    try:
        return parse(text)
    except SpecError as exc:
        raise InvalidInput(f"window {text!r}: use 1h, 6h, 1d, 7d ... or 'since last check'", field="window") from exc
