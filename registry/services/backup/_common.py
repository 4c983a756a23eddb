"""What export and import share: the archive's constants, the errors, the tables, and the value encoding."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Float,
    Interval,
    LargeBinary,
    Numeric,
    Table,
    Time,
    TypeDecorator,
    tuple_,
)
from sqlalchemy import Uuid as UuidType
from sqlalchemy.sql.elements import ColumnElement

import automations.domain  # noqa: F401  (the modules registry/migrations/env.py imports: every table)
import monitoring.domain  # noqa: F401
from registry import errors
from registry.domain import Base
from registry.domain.artifacts import Blob

FORMAT = "modelkeep-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BATCH = 500
"""Rows per query or insert: few enough bound parameters for any SQLite build, enough to amortise trips."""
BLOBS = Base.metadata.tables[Blob.__tablename__]
"""The table whose rows name the blobs an archive carries (a row exists only once its bytes are stored)."""

Key = tuple[Any, ...]


class ArchiveInvalid(errors.InvalidInput):
    """The archive is not one ``registry export`` wrote, or it was changed or cut short since."""

    code = "archive_invalid"


class SchemaMismatch(errors.InvalidInput):
    """The database or the archive is at another schema revision than this code."""

    code = "schema_mismatch"


class TargetNotEmpty(errors.InvalidInput):
    code = "target_not_empty"


class BackupFailed(errors.RegistryError):
    """The source is inconsistent (a recorded blob missing or changed in the store): no archive was written."""

    code = "backup_failed"


def table_of(model: type[Base]) -> Table:
    return Base.metadata.tables[model.__tablename__]


def tables() -> list[Table]:
    """Every table of the registry, parents before children."""
    return list(Base.metadata.sorted_tables)


def head_revision() -> str:
    """The schema revision this code's migrations end at."""
    from registry import migrations

    head = migrations.head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def primary_key(table: Table) -> list[Column[Any]]:
    return list(table.primary_key.columns) or list(table.columns)


def key_in(columns: Sequence[Column[Any]], keys: Sequence[Key]) -> ColumnElement[bool]:
    """``columns IN keys``; row values (``(a, b) IN ((1, 2), ...)``) for composite keys."""
    if len(columns) == 1:
        return columns[0].in_([k[0] for k in keys])
    return tuple_(*columns).in_(keys)


# -- values ------------------------------------------------------------------------------------------------
_KINDS: tuple[tuple[type[Any], str], ...] = (
    (JSON, "json"),
    (DateTime, "datetime"),
    (Date, "date"),
    (Time, "time"),
    (Interval, "interval"),
    (LargeBinary, "bytes"),
    (Float, "plain"),  # before Numeric, its base class: floats are JSON numbers
    (Numeric, "decimal"),
    (UuidType, "uuid"),
)


def column_kind(column: Column[Any]) -> str:
    """How the column's values are written: by its type (a TypeDecorator by the type it stores as)."""
    kind = column.type
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    name = next((name for cls, name in _KINDS if isinstance(kind, cls)), "plain")
    if name == "decimal" and not getattr(kind, "asdecimal", True):
        return "plain"  # a Numeric that hands out floats
    return name


def encode_value(kind: str, value: Any) -> Any:
    """A column value as JSON: datetimes ISO with their offset, bytes base64, decimals and UUIDs as text,
    intervals in microseconds, JSON columns as they are. Raises TypeError for a value it cannot carry."""
    if value is None or kind == "json":
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value // timedelta(microseconds=1)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"no archive encoding for {type(value).__name__}")


_DECODERS: dict[str, Any] = {
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "interval": lambda v: timedelta(microseconds=v),
    "bytes": lambda v: base64.b64decode(v, validate=True),
    "decimal": Decimal,
    "uuid": uuid.UUID,
}


def decode_value(kind: str, value: Any) -> Any:
    """The inverse of :func:`encode_value`; raises ValueError/TypeError for a value of the wrong shape."""
    if value is None or kind not in _DECODERS:
        return value
    return _DECODERS[kind](value)
