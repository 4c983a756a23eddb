"""Typed ORM base: naming convention, shared column types, the metadata Alembic compares against."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, String, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, mapped_column

# Explicit names for every constraint: Alembic's batch mode on SQLite recreates tables and needs them,
# and migrations stay identical on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """32-hex identifier (the MLflow run-id shape: no dashes, safe inside ``runs:/<id>/path``)."""
    return uuid.uuid4().hex


# BigInteger primary keys must stay INTEGER on SQLite to be rowid aliases (autoincrement).
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")

IntPK = Annotated[int, mapped_column(BigIntPK, primary_key=True, autoincrement=True)]
HexId = Annotated[str, mapped_column(String(32), primary_key=True, default=new_id)]
Sha256 = Annotated[str, mapped_column(String(64))]
Timestamp = Annotated[datetime, mapped_column(UTCDateTime(), default=utcnow)]
EpochMillis = Annotated[int, mapped_column(BigInteger)]
JsonDict = Annotated[dict[str, Any], mapped_column(JSON, default=dict)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, int: BigInteger}
