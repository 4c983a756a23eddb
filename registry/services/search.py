"""Search runs, registered models and model versions with MLflow's filter grammar (parsed by ``filters``).

Semantics, shared by the MLflow face and the native API:

* ``!=`` on a **run** param or tag needs the key to exist (MLflow's run search joins on the key), so
  ``params.opt != 'adam'`` skips runs that never logged ``opt``; write ``IS NULL`` to find those. On
  **model and version** tags ``!=`` also matches rows *without* the tag: the MLflow client appends
  ``tag.`mlflow.prompt.is_prompt` != 'true'`` to every model search and expects ordinary models back.
* Metrics compare the latest value per key (``latest_metrics``); a run without the metric never matches.
  Attributes follow SQL: a NULL ``end_time`` or version ``run_id`` matches no comparison, ``!=`` included.
* ``LIKE`` is case-sensitive and ``ILIKE`` case-insensitive on both databases; ``%`` and ``_`` are the
  wildcards and a backslash escapes the next character. PostgreSQL does this natively. SQLite's LIKE folds
  ASCII case and a PRAGMA would change it for every user of the shared connection, so on SQLite both run
  through ``modelkeep_like``, a function registered on each connection the first time a search needs it.
* ``start_time``/``end_time`` and the model timestamps are epoch milliseconds at millisecond precision, the
  value the API shows, so ``start_time = <shown value>`` finds the run.
* Orderings put NULLs (a missing metric, param or tag, an open ``end_time``) last in both directions and sort
  strings by code point on both databases; a unique tie-breaker always ends the ordering.
* Page tokens are base64url JSON ``{"offset": n, "q": fingerprint}``. Offsets stay stable across pages because
  the ordering is total; the fingerprint rejects a token replayed against a different query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import operator
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Row,
    Select,
    String,
    and_,
    cast,
    exists,
    false,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased
from sqlalchemy.sql.elements import UnaryExpression

from registry.domain.models import ModelTag, ModelVersion, RegisteredModel, VersionTag
from registry.domain.runs import LatestMetric, Param, Run, RunTag
from registry.errors import InvalidInput
from registry.services._sql import dialect
from registry.services.filters import (
    MODELS,
    RUNS,
    VERSIONS,
    Comparison,
    Kind,
    Op,
    OrderBy,
    Schema,
    parse_filter,
    parse_order_by,
)

MAX_RUNS = 50_000
MAX_MODELS = 1_000
MAX_VERSIONS = 200_000
VIEWS = {"ACTIVE_ONLY": ("active",), "DELETED_ONLY": ("deleted",), "ALL": None}
LIKE_FUNCTION = "modelkeep_like"
_MAX_TOKEN = 512
_MAX_OFFSET = 2**53
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_MS = -62_135_596_800_000  # 0001-01-01, the first instant a datetime can hold
_MAX_MS = 253_402_300_799_999  # 9999-12-31 23:59:59.999
_INT64 = 2**63
_COMPARE = {
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
}
_T = TypeVar("_T")


async def search_runs(
    session: AsyncSession,
    *,
    experiment_ids: list[int],
    filter: str = "",
    order_by: list[str] | None = None,
    max_results: int = 1000,
    page_token: str | None = None,
    view: str = "ACTIVE_ONLY",
) -> tuple[list[Run], str | None]:
    """Runs of ``experiment_ids`` matching ``filter``, ordered by ``order_by`` then ``start_time DESC, id``.

    Returns one page and the token of the next one (None on the last page). Raises InvalidInput for a
    malformed filter, ordering or token, an unknown ``view`` or ``max_results`` outside 1..50,000.
    """
    _check_max_results(max_results, MAX_RUNS)
    view = view.upper()
    if view not in VIEWS:
        raise InvalidInput(f"unknown run view {view!r}: use {', '.join(VIEWS)}", field="run_view_type")
    stages = VIEWS[view]
    comparisons, orders = parse_filter(filter, RUNS), parse_order_by(order_by, RUNS)
    # Ids beyond BIGINT name no experiment; passing them on would make PostgreSQL raise.
    experiments = sorted({i for i in experiment_ids if -_INT64 <= i < _INT64})
    fingerprint = _fingerprint(RUNS, comparisons, orders, experiments, view)
    offset = _decode_token(page_token, fingerprint)
    if not experiments:
        return [], None
    sqlite = await _prepare(session, comparisons)
    query: Select[Any] = select(Run).where(Run.experiment_id.in_(experiments))
    if stages is not None:
        query = query.where(Run.lifecycle_stage.in_(stages))
    query = query.where(*(_run_condition(c, sqlite) for c in comparisons))
    query, clauses = _run_ordering(query, orders, sqlite)
    rows = list(await session.scalars(query.order_by(*clauses).offset(offset).limit(max_results + 1)))
    return _page(rows, offset, max_results, fingerprint)


async def search_models(
    session: AsyncSession,
    *,
    filter: str = "",
    order_by: list[str] | None = None,
    max_results: int = 100,
    page_token: str | None = None,
) -> tuple[list[RegisteredModel], str | None]:
    """Registered models matching ``filter`` (``name``, ``tags.<k>``), ordered by ``order_by`` then ``name``.

    Raises InvalidInput for a malformed filter, ordering or token, or ``max_results`` outside 1..1,000.
    """
    _check_max_results(max_results, MAX_MODELS)
    comparisons, orders = parse_filter(filter, MODELS), parse_order_by(order_by, MODELS)
    fingerprint = _fingerprint(MODELS, comparisons, orders)
    offset = _decode_token(page_token, fingerprint)
    sqlite = await _prepare(session, comparisons)
    conditions = [_model_condition(c, sqlite) for c in comparisons]
    columns = {
        "name": _text_order(RegisteredModel.name, sqlite),
        "creation_timestamp": RegisteredModel.created_at,
        "last_updated_timestamp": RegisteredModel.updated_at,
    }
    clauses = [_direction(columns[o.field.key], o.ascending) for o in orders]
    if not any(o.field.key == "name" for o in orders):
        clauses.append(columns["name"].asc())
    query = select(RegisteredModel).where(*conditions).order_by(*clauses).offset(offset).limit(max_results + 1)
    return _page(list(await session.scalars(query)), offset, max_results, fingerprint)


VERSION_COLUMNS = (
    ModelVersion.id,
    ModelVersion.version,
    # The stored value as the driver reads it (naive UTC on SQLite): a renderer of thousands of rows converts
    # it once, to epoch milliseconds, rather than first to an aware datetime.
    type_coerce(ModelVersion.created_at, DateTime()).label("created_at"),
    type_coerce(ModelVersion.updated_at, DateTime()).label("updated_at"),
    ModelVersion.created_by,
    ModelVersion.stage,
    ModelVersion.description,
    ModelVersion.source,
    ModelVersion.run_id,
)


async def search_versions(
    session: AsyncSession,
    *,
    filter: str = "",
    order_by: list[str] | None = None,
    max_results: int = 10_000,
    page_token: str | None = None,
) -> tuple[list[Row[*tuple[Any, ...]]], str | None]:
    """Model versions matching ``filter``, ordered by ``order_by`` then ``name ASC, version DESC``, as rows
    of the model's ``name`` and ``VERSION_COLUMNS`` (plain columns: a page of 1,000 versions is rendered
    without hydrating 2,000 ORM objects). Raises InvalidInput for a malformed filter, ordering or token, or
    ``max_results`` outside 1..200,000.
    """
    _check_max_results(max_results, MAX_VERSIONS)
    comparisons, orders = parse_filter(filter, VERSIONS), parse_order_by(order_by, VERSIONS)
    fingerprint = _fingerprint(VERSIONS, comparisons, orders)
    offset = _decode_token(page_token, fingerprint)
    sqlite = await _prepare(session, comparisons)
    conditions = [_version_condition(c, sqlite) for c in comparisons]
    columns: dict[str, Any] = {
        "name": _text_order(RegisteredModel.name, sqlite),
        "version_number": ModelVersion.version,
        "creation_timestamp": ModelVersion.created_at,
        "last_updated_timestamp": ModelVersion.updated_at,
    }
    clauses = [_direction(columns[o.field.key], o.ascending) for o in orders]
    ordered = {o.field.key for o in orders}
    if "name" not in ordered:
        clauses.append(columns["name"].asc())
    if "version_number" not in ordered:
        clauses.append(ModelVersion.version.desc())
    query = (
        select(RegisteredModel.name, *VERSION_COLUMNS)
        .join(RegisteredModel, ModelVersion.model_id == RegisteredModel.id)
        .where(*conditions)
        .order_by(*clauses)
        .offset(offset)
        .limit(max_results + 1)
    )
    # Through the session's connection: plain rows, without the ORM's per-row loading (a fifth of a
    # 1,000-version page's CPU when run through the session).
    rows = list((await (await session.connection()).execute(query)).all())
    return _page(rows, offset, max_results, fingerprint)


# ------------------------------------------------------------------------------------------- conditions


def _run_condition(c: Comparison, sqlite: bool) -> ColumnElement[bool]:
    key = c.field.key
    if c.field.kind is Kind.METRIC:
        assert isinstance(c.value, int | float)
        return exists().where(
            LatestMetric.run_id == Run.id, LatestMetric.key == key, _numeric(LatestMetric.value, c.op, float(c.value))
        )
    if c.field.kind is Kind.PARAM:
        return _keyed(Param.run_id == Run.id, Param.key, Param.value, c, sqlite, ne_matches_missing=False)
    if c.field.kind is Kind.TAG:
        return _keyed(RunTag.run_id == Run.id, RunTag.key, RunTag.value, c, sqlite, ne_matches_missing=False)
    if key in ("start_time", "end_time"):
        assert isinstance(c.value, int | float)
        return _millis(Run.start_time if key == "start_time" else Run.end_time, c.op, c.value)
    columns = {"run_id": Run.id, "run_name": Run.name, "status": Run.status, "user_id": Run.user}
    return _text(columns[key] if key in columns else _artifact_uri(), c, sqlite)


def _model_condition(c: Comparison, sqlite: bool) -> ColumnElement[bool]:
    if c.field.kind is Kind.TAG:
        owner = ModelTag.model_id == RegisteredModel.id
        return _keyed(owner, ModelTag.key, ModelTag.value, c, sqlite, ne_matches_missing=True)
    return _text(RegisteredModel.name, c, sqlite)


def _version_condition(c: Comparison, sqlite: bool) -> ColumnElement[bool]:
    key = c.field.key
    if c.field.kind is Kind.TAG:
        owner = VersionTag.version_id == ModelVersion.id
        return _keyed(owner, VersionTag.key, VersionTag.value, c, sqlite, ne_matches_missing=True)
    if key == "version_number":
        assert isinstance(c.value, int)
        return _integer(ModelVersion.version, c.op, c.value)
    columns = {"name": RegisteredModel.name, "run_id": ModelVersion.run_id, "source_path": ModelVersion.source}
    return _text(columns[key], c, sqlite)


def _keyed(
    owner: ColumnElement[bool],
    key_column: InstrumentedAttribute[str],
    value_column: InstrumentedAttribute[str],
    c: Comparison,
    sqlite: bool,
    *,
    ne_matches_missing: bool,
) -> ColumnElement[bool]:
    """A condition on a key/value child row (param or tag) of the searched row."""
    has_key = and_(owner, key_column == c.field.key)
    if c.op is Op.IS_NULL:
        return ~exists().where(has_key)
    if c.op is Op.IS_NOT_NULL:
        return exists().where(has_key)
    if c.op is Op.NE and ne_matches_missing:
        return ~exists().where(has_key, value_column == c.value)
    return exists().where(has_key, _text(value_column, c, sqlite))


def _text(column: ColumnElement[Any] | InstrumentedAttribute[Any], c: Comparison, sqlite: bool) -> ColumnElement[bool]:
    if c.op in (Op.IN, Op.NOT_IN):
        assert isinstance(c.value, tuple)
        return column.in_(c.value) if c.op is Op.IN else column.not_in(c.value)
    assert isinstance(c.value, str)
    if c.op is Op.EQ:
        return column == c.value
    if c.op is Op.NE:
        return column != c.value
    if sqlite:
        return func.modelkeep_like(column, c.value, int(c.op is Op.ILIKE)) == 1
    if c.op is Op.LIKE:
        return column.like(c.value, escape="\\")
    return column.ilike(c.value, escape="\\")


def _numeric(column: Any, op: Op, value: float) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = _COMPARE[op](column, value)
    return condition


def _integer(column: Any, op: Op, value: int) -> ColumnElement[bool]:
    # A literal beyond BIGINT would make PostgreSQL raise; it compares like an infinity instead.
    if -_INT64 <= value < _INT64:
        return _numeric(column, op, value)
    if op is Op.EQ:
        return false()
    below = op in (Op.NE, Op.LT, Op.LE) if value > 0 else op in (Op.NE, Op.GT, Op.GE)
    return column.is_not(None) if below else false()


def _millis(column: InstrumentedAttribute[Any], op: Op, value: float) -> ColumnElement[bool]:
    """Compare a UTC datetime column as whole epoch milliseconds (floored, what the API shows).

    For an integer n, ``ms < n`` ⇔ ``column < instant(n)``, so every operator becomes a bound on the column
    and indexes stay usable.
    """
    floor, ceil = _floor(value), _ceil(value)
    if op is Op.EQ or op is Op.NE:
        if floor != ceil:  # 1.5 ms: no whole millisecond equals it
            return false() if op is Op.EQ else column.is_not(None)
        inside = and_(_at_or_after(column, floor), ~_at_or_after(column, floor + 1))
        return inside if op is Op.EQ else and_(column.is_not(None), ~inside)
    if op is Op.LT:
        return ~_at_or_after(column, ceil) & column.is_not(None)
    if op is Op.LE:
        return ~_at_or_after(column, floor + 1) & column.is_not(None)
    if op is Op.GT:
        return _at_or_after(column, floor + 1)
    return _at_or_after(column, ceil)


def _at_or_after(column: InstrumentedAttribute[Any], ms: int) -> ColumnElement[bool]:
    if ms <= _MIN_MS:
        return column.is_not(None)
    if ms > _MAX_MS:
        return false()
    return column >= _EPOCH + timedelta(milliseconds=ms)


def _floor(value: float) -> int:
    return math.floor(value) if math.isfinite(value) else (_MAX_MS + 1 if value > 0 else _MIN_MS)


def _ceil(value: float) -> int:
    return math.ceil(value) if math.isfinite(value) else (_MAX_MS + 1 if value > 0 else _MIN_MS)


def _artifact_uri() -> ColumnElement[str]:
    # Mirrors registry/api/mlflow/_wire.py::artifact_uri; the column does not exist, the URI is derived.
    return literal("mlflow-artifacts:/") + cast(Run.experiment_id, String) + "/" + Run.id + "/artifacts"


# --------------------------------------------------------------------------------------------- ordering


def _run_ordering(
    query: Select[Any], orders: Sequence[OrderBy], sqlite: bool
) -> tuple[Select[Any], list[UnaryExpression[Any]]]:
    clauses: list[UnaryExpression[Any]] = []
    attributes: dict[str, Any] = {
        "run_id": Run.id,
        "run_name": _text_order(Run.name, sqlite),
        "status": Run.status,
        "user_id": _text_order(Run.user, sqlite),
        "artifact_uri": _text_order(_artifact_uri(), sqlite),
        "start_time": Run.start_time,
        "end_time": Run.end_time,
    }
    for order in orders:
        key = order.field.key
        if order.field.kind is Kind.ATTRIBUTE:
            clauses.append(_direction(attributes[key], order.ascending))
            continue
        # One outer join per ordered key: a run lacking it still appears, with NULL sorted last.
        child: Any = aliased({Kind.METRIC: LatestMetric, Kind.PARAM: Param, Kind.TAG: RunTag}[order.field.kind])
        query = query.outerjoin(child, and_(child.run_id == Run.id, child.key == key))
        value = child.value if order.field.kind is Kind.METRIC else _text_order(child.value, sqlite)
        clauses.append(_direction(value, order.ascending))
    # MLflow's default and tie-breakers: newest first unless start_time was ordered, then the unique id.
    if not any(o.field.kind is Kind.ATTRIBUTE and o.field.key == "start_time" for o in orders):
        clauses.append(Run.start_time.desc())
    clauses.append(Run.id.asc())
    return query, clauses


def _direction(expression: Any, ascending: bool) -> UnaryExpression[Any]:
    ordered: UnaryExpression[Any] = expression.asc() if ascending else expression.desc()
    return ordered.nulls_last()


def _text_order(expression: Any, sqlite: bool) -> Any:
    # SQLite compares text by code point (BINARY); PostgreSQL by the database's locale unless told otherwise.
    return expression if sqlite else expression.collate("C")


# ------------------------------------------------------------------------------------- pages and tokens


def _check_max_results(value: int, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise InvalidInput(f"max_results must be between 1 and {limit}, got {value!r}", field="max_results")


def _fingerprint(schema: Schema, comparisons: list[Comparison], orders: list[OrderBy], *scope: Any) -> str:
    shape = [
        schema.name,
        [[c.field.kind, c.field.key, c.op, c.value] for c in comparisons],
        [[o.field.kind, o.field.key, o.ascending] for o in orders],
        list(scope),
    ]
    return hashlib.sha256(json.dumps(shape, default=str).encode()).hexdigest()[:16]


def _page(rows: list[_T], offset: int, max_results: int, fingerprint: str) -> tuple[list[_T], str | None]:
    if len(rows) <= max_results:
        return rows, None
    payload = json.dumps({"offset": offset + max_results, "q": fingerprint}, separators=(",", ":"))
    return rows[:max_results], base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_token(token: str | None, fingerprint: str) -> int:
    """The offset a page token carries; raises InvalidInput unless it is one of ours, for this query."""
    if not token:
        return 0
    invalid = InvalidInput("invalid page_token: not a token returned by this search", field="page_token")
    if not isinstance(token, str) or len(token) > _MAX_TOKEN:
        raise invalid
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        data = json.loads(raw)
    except (ValueError, binascii.Error):
        raise invalid from None
    if not isinstance(data, dict) or set(data) != {"offset", "q"}:
        raise invalid
    offset = data["offset"]
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= _MAX_OFFSET:
        raise invalid
    if data["q"] != fingerprint:
        raise InvalidInput(
            "invalid page_token: it belongs to a search with another filter, ordering or scope", field="page_token"
        )
    return offset


# ------------------------------------------------------------------------------ LIKE on SQLite, exactly


async def _prepare(session: AsyncSession, comparisons: list[Comparison]) -> bool:
    """Register ``modelkeep_like`` on this SQLite connection when the filter needs it; True on SQLite."""
    if dialect(session) != "sqlite":
        return False
    if any(c.op in (Op.LIKE, Op.ILIKE) for c in comparisons):
        raw = await (await session.connection()).get_raw_connection()
        # ``info`` lives as long as the DBAPI connection, so each pooled connection registers once.
        if not raw.info.get(LIKE_FUNCTION):
            driver: Any = raw.driver_connection
            await driver.create_function(LIKE_FUNCTION, 3, sqlite_like, deterministic=True)
            raw.info[LIKE_FUNCTION] = True
    return True


def sqlite_like(value: object, pattern: object, insensitive: object) -> int | None:
    """SQL ``LIKE`` (or ``ILIKE`` when ``insensitive``) with backslash escapes; NULL in, NULL out."""
    if not isinstance(value, str) or not isinstance(pattern, str):
        return None
    return int(_like_match(value, _compile_like(pattern), bool(insensitive)))


_ANY, _ONE = "%", "_"


@lru_cache(maxsize=512)
def _compile_like(pattern: str) -> tuple[tuple[bool, str], ...]:
    """(is_wildcard, char) items; escaped characters become literals."""
    items: list[tuple[bool, str]] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            items.append((False, pattern[i + 1]))
            i += 2
            continue
        if ch == _ANY and items and items[-1] == (True, _ANY):
            i += 1  # %% is %: fewer backtracking points
            continue
        items.append((ch in (_ANY, _ONE), ch))
        i += 1
    return tuple(items)


def _like_match(value: str, pattern: tuple[tuple[bool, str], ...], insensitive: bool) -> bool:
    # Greedy match that backtracks only to the last '%': O(len(value) * len(pattern)) at worst, unlike a
    # regex, whose backtracking a crafted '%a%a%a...' pattern can make explode.
    v = p = 0
    star, mark = -1, 0
    while v < len(value):
        if p < len(pattern) and pattern[p] != (True, _ANY):
            wildcard, ch = pattern[p]
            if wildcard or ch == value[v] or (insensitive and ch.lower() == value[v].lower()):
                v, p = v + 1, p + 1
                continue
        elif p < len(pattern):
            star, mark, p = p, v, p + 1
            continue
        if star < 0:
            return False
        mark += 1
        v, p = mark, star + 1
    return all(item == (True, _ANY) for item in pattern[p:])
