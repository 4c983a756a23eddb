"""Mergeable per-column profiles: what monitoring keeps instead of rows.

A batch of rows is reduced once to a :class:`TableProfile`; profiles of batches, time buckets and
replicas merge into the profile of their union, so a check over a day or a month reads a few
kilobytes per column instead of the rows. Every drift statistic in :mod:`monitoring.drift` is
computed from these profiles alone.

Numbers keep exact count, nulls, min/max and mean/variance (Chan's parallel merge), a KLL quantile
sketch (Apache DataSketches) and, while a column has at most 64 distinct values, their exact
counts, so low-cardinality columns get exact statistics. Categories keep exact counts for the
first 1,000 distinct values and a frequent-items sketch for the rest. Nulls, NaN and ±inf count
as missing, because Evidently drops them before every drift test.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import datasketches as ds
import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# KLL sketch size. DataSketches' default k=200 has a rank error of 1.65% (all ranks, 99% confidence),
# which moves a binned PSI by up to ~0.2 near the 0.1 threshold; k=1000 has 0.36%, is exact up to
# 2,000 rows (so Evidently's small-reference tests are exact) and costs ~24 KB per column at 1M rows.
KLL_K = 1000
EXACT_VALUES = 64  # numeric columns keep exact value counts up to this many distinct values
TAIL = 512  # numeric columns keep this many smallest and largest values exactly
CATEGORY_CAP = 1000  # categorical columns keep exact counts for this many distinct values
FREQUENT_LG_K = 10  # frequent-items map of 2**10 slots (768 tracked items) beyond the cap
CATEGORICAL_INT_LIMIT = 10  # Evidently infers integer columns with <= 10 distinct values as categorical
FORMAT_VERSION = 1
OTHER = "\x00other"  # the pooled key for sketched categories of unknown value (no real value starts with NUL)


class ProfileError(ValueError):
    """Bad input for profiling: a schema mismatch, an unsupported type, corrupt bytes.

    ``column`` names the offending column when there is one, so callers can say which.
    """

    def __init__(self, message: str, *, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


class Kind(StrEnum):
    numerical = "numerical"
    categorical = "categorical"


@dataclass(frozen=True)
class Schema:
    """The monitored columns of a baseline and their kinds, plus the role columns.

    ``columns`` holds the monitored feature columns in order, the prediction column included.
    ``target``, ``id`` and ``timestamp`` are never drift-monitored.
    """

    columns: dict[str, Kind]
    prediction: str | None = None
    target: str | None = None
    id: str | None = None
    timestamp: str | None = None

    def roles(self) -> tuple[str, ...]:
        """Role columns a batch may carry beside the monitored ones."""
        return tuple(c for c in (self.target, self.id, self.timestamp) if c is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": [{"name": name, "kind": kind.value} for name, kind in self.columns.items()],
            "prediction": self.prediction,
            "target": self.target,
            "id": self.id,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schema:
        """Inverse of :meth:`to_json`. Raises :class:`ProfileError` on a malformed document."""
        try:
            columns = {str(c["name"]): Kind(c["kind"]) for c in data["columns"]}
            roles = {r: data.get(r) for r in ("prediction", "target", "id", "timestamp")}
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"malformed schema: {exc}") from exc
        if not all(v is None or isinstance(v, str) for v in roles.values()):
            raise ProfileError("malformed schema: role columns must be names")
        return cls(columns=columns, **roles)


def infer_schema(
    table: pa.Table,
    *,
    prediction: str | None = None,
    target: str | None = None,
    id: str | None = None,
    timestamp: str | None = None,
    columns: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    categorical: Sequence[str] = (),
    numerical: Sequence[str] = (),
) -> Schema:
    """Choose the monitored columns and their kinds, by the rule used for reference and production.

    Explicit ``categorical``/``numerical`` lists win. Otherwise bool, string and dictionary columns
    are categorical, integer columns with at most 10 distinct values are categorical (Evidently's
    rule, so both tools see the same kinds), and other numbers are numerical. Role columns
    (target, id, timestamp) are never monitored; the prediction column always is.

    Raises :class:`ProfileError` naming the column for unknown names and unsupported types.
    """
    names = table.column_names
    for name in [prediction, target, id, timestamp, *(columns or ()), *exclude, *categorical, *numerical]:
        if name is not None and name not in names:
            raise ProfileError(f"column {name!r} is not in the data", column=name)
    both = set(categorical) & set(numerical)
    if both:
        name = sorted(both)[0]
        raise ProfileError(f"column {name!r} is listed as both categorical and numerical", column=name)
    roles = {target, id, timestamp} - {None}
    chosen = [c for c in (columns if columns is not None else names) if c not in roles and c not in exclude]
    if prediction is not None and prediction not in chosen:
        chosen.append(prediction)
    if not chosen:
        raise ProfileError("no columns left to monitor")
    kinds: dict[str, Kind] = {}
    for name in chosen:
        kinds[name] = _infer_kind(table.column(name), name, categorical, numerical)
    return Schema(columns=kinds, prediction=prediction, target=target, id=id, timestamp=timestamp)


def _infer_kind(column: pa.ChunkedArray, name: str, categorical: Sequence[str], numerical: Sequence[str]) -> Kind:
    t = column.type
    if name in categorical:
        _check_type(t, Kind.categorical, name)
        return Kind.categorical
    if name in numerical:
        _check_type(t, Kind.numerical, name)
        return Kind.numerical
    if pa.types.is_boolean(t) or _is_text(t):
        return Kind.categorical
    if pa.types.is_integer(t):
        distinct = pc.count_distinct(column, mode="only_valid").as_py()
        return Kind.categorical if distinct <= CATEGORICAL_INT_LIMIT else Kind.numerical
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return Kind.numerical
    raise ProfileError(f"column {name!r} has unsupported type {t}; exclude it or state its kind", column=name)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t))


def _check_type(t: pa.DataType, kind: Kind, name: str) -> None:
    """Numbers and booleans read as either kind, text only as categorical; the null type (an
    all-null batch) fits both."""
    numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    if not (pa.types.is_null(t) or numeric or pa.types.is_boolean(t) or (kind is Kind.categorical and _is_text(t))):
        raise ProfileError(f"column {name!r} has type {t}, which cannot be read as {kind.value}", column=name)


def conform(table: pa.Table, schema: Schema) -> pa.Table:
    """Check a batch against a baseline's schema and cast it to what profiling expects.

    Returns the monitored columns in schema order (numerical as integer or float64, categorical as
    string) followed by whichever role columns the batch carries, unchanged. Raises
    :class:`ProfileError` naming the column for an empty batch, a missing column, an extra column
    that is neither monitored nor a role, and a type that changed kind (text where numbers were).
    """
    if table.num_rows == 0:
        raise ProfileError("the batch has no rows")
    names = set(table.column_names)
    for name in schema.columns:
        if name not in names:
            raise ProfileError(f"column {name!r} is missing", column=name)
    known = set(schema.columns) | set(schema.roles())
    for name in table.column_names:
        if name not in known:
            raise ProfileError(f"column {name!r} is not in the baseline", column=name)
    arrays: list[pa.ChunkedArray] = []
    for name, kind in schema.columns.items():
        column = table.column(name)
        # Integer columns stay integer: Evidently bins integer data differently (see drift.py).
        keep = kind is Kind.numerical and pa.types.is_integer(column.type)
        arrays.append(column if keep else _cast(column, kind, name))
    roles = [r for r in schema.roles() if r in names]
    arrays.extend(table.column(r) for r in roles)
    return pa.table(arrays, names=[*schema.columns, *roles])


def _cast(column: pa.ChunkedArray, kind: Kind, name: str) -> pa.ChunkedArray:
    _check_type(column.type, kind, name)
    t = column.type
    if kind is Kind.numerical:
        return column if pa.types.is_float64(t) else column.cast(pa.float64())
    if pa.types.is_string(t):
        return column
    if pa.types.is_dictionary(t):
        return column.cast(pa.string())
    if pa.types.is_floating(t):
        # NaN and inf are missing, as everywhere. 3.0 and 3 must be one category: an int column that
        # arrives as float (pandas does that when a value is null) keeps its labels when every value
        # is integral.
        column = pc.if_else(pc.is_finite(column), column, None)
        values = column.drop_null().to_numpy()
        if values.size and np.array_equal(values, np.round(values)) and np.abs(values).max() < 2**53:
            column = column.cast(pa.int64())
    return column.cast(pa.string())


def _pairs(keys: Iterable[Any], counts: Iterable[int]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for key, n in zip(keys, counts, strict=True):
        out[key] = out.get(key, 0) + int(n)
    return out


@dataclass(eq=False)
class NumericProfile:
    """A mergeable summary of one numerical column. ``count`` counts finite values only.

    ``mean``/``m2`` are the running mean and sum of squared deviations (Chan et al.'s parallel
    update), so the merged variance equals the variance of the union up to rounding. An empty
    profile has ``min = inf`` and ``max = -inf``, the identities of min and max. ``low`` and
    ``high`` are the 512 smallest and largest values, exactly: a KLL sketch's error is a share
    of all rows, so alone it cannot tell 0 rows from 40 in a far tail, and PSI's log ratio turns
    that difference into a large one.
    """

    count: int
    nulls: int
    min: float
    max: float
    mean: float
    m2: float
    sketch: Any  # datasketches.kll_doubles_sketch
    values: dict[float, int] | None
    integer: bool = False  # every input was integer-typed (numpy bins integer data differently)
    low: np.ndarray = field(default_factory=lambda: np.empty(0))
    high: np.ndarray = field(default_factory=lambda: np.empty(0))

    @classmethod
    def of(cls, values: np.ndarray, nulls: int = 0, k: int = KLL_K, *, integer: bool = False) -> NumericProfile:
        """Profile finite float64 ``values`` (missing ones already removed and counted in ``nulls``)."""
        if values.size == 0:
            return cls(0, nulls, math.inf, -math.inf, 0.0, 0.0, ds.kll_doubles_sketch(k), {}, True)
        sketch = ds.kll_doubles_sketch(k)
        # The binding accepts only writable arrays; Arrow's zero-copy views are read-only.
        sketch.update(values if values.flags.writeable else values.copy())
        mean = float(values.mean())
        deviations = values - mean
        m2 = float(deviations @ deviations)
        low, high = _tails(values)
        lo, hi = float(values.min()), float(values.max())
        return cls(int(values.size), nulls, lo, hi, mean, m2, sketch, _few_values(values), integer, low, high)

    def variance(self) -> float:
        """Population variance (ddof=0), as ``np.std`` uses for Evidently's Wasserstein norm."""
        return self.m2 / self.count if self.count else math.nan

    def std(self) -> float:
        return math.sqrt(self.variance())

    def n_unique(self) -> int | None:
        """Distinct finite values, exact while kept (<= 64), else None (meaning more than 64)."""
        return None if self.values is None else len(self.values)

    def exact(self) -> bool:
        """Whether :meth:`support` is the exact distribution: values kept, or every row in the tails
        or the sketch."""
        kept = self.count <= len(self.low) + len(self.high)
        return self.values is not None or kept or not self.sketch.is_estimation_mode()

    def rank_error(self) -> float:
        """The sketch's documented normalized rank error over all ranks (99% confidence); 0 when exact.

        :meth:`cdf` is within it everywhere, and exact in the tails kept as ``low``/``high``.
        """
        return 0.0 if self.exact() else float(self.sketch.normalized_rank_error(True))

    def support(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted points and weights (summing to ``count``) of the distribution.

        Exact when :meth:`exact`. Otherwise the exact tails, with the sketch's items between
        them; their cumulative weights are clipped to what the tails allow, which can only move
        them closer to the truth, so the rank error stays within the sketch's.
        """
        if self.values is not None:
            pairs = sorted(self.values.items())
            return np.array([p for p, _ in pairs], dtype=np.float64), np.array([w for _, w in pairs], dtype=np.float64)
        overlap = len(self.low) + len(self.high) - self.count
        if overlap >= 0:  # the tails hold every row
            points, counts = np.unique(np.concatenate([self.low, self.high[overlap:]]), return_counts=True)
            return points, counts.astype(np.float64)
        points = np.unique(np.array([float(v) for v, _ in self.sketch], dtype=np.float64))
        # Weights from the sketch's own CDF: datasketches 5.2's iterator reports weight 1 for every
        # item of a merged sketch, while get_cdf reads the sorted view correctly.
        cumulative = np.round(np.array(self.sketch.get_cdf(points.tolist(), True)[:-1]) * self.count)
        weights = np.diff(cumulative, prepend=0.0)
        if self.exact():
            return points, weights
        n, lows, highs = self.count, len(self.low), len(self.high)
        # Sketch items at the low cut carry the ties beyond the kept tail; those at the high cut
        # are all in the kept tail.
        middle = (points >= self.low[-1]) & (points < self.high[0])
        cumulative = np.concatenate(
            [
                np.arange(1, lows + 1),
                np.clip(cumulative[middle], lows, n - highs),
                np.arange(n - highs + 1, n + 1),
            ]
        )
        points = np.concatenate([self.low, points[middle], self.high])
        return points, np.diff(cumulative, prepend=0.0).astype(np.float64)

    def cdf(self, points: np.ndarray) -> np.ndarray:
        """P(X <= x) for each x, from :meth:`support`."""
        support, weights = self.support()
        if self.count == 0:
            return np.full(len(points), math.nan)
        cumulative = np.concatenate([[0.0], np.cumsum(weights)])
        found: np.ndarray = cumulative[np.searchsorted(support, points, side="right")] / self.count
        return found

    def quantiles(self, ranks: np.ndarray) -> np.ndarray:
        if self.count == 0:
            return np.full(len(ranks), math.nan)
        return np.array(self.sketch.get_quantiles([float(r) for r in ranks], True), dtype=np.float64)

    def merge(self, other: NumericProfile) -> NumericProfile:
        """The profile of the union of both inputs (neither input is changed)."""
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count if count else 0.0
        m2 = self.m2 + other.m2 + (delta * delta * self.count * other.count / count if count else 0.0)
        sketch = ds.kll_doubles_sketch.deserialize(self.sketch.serialize())
        sketch.merge(other.sketch)
        values: dict[float, int] | None = None
        if self.values is not None and other.values is not None:
            values = dict(self.values)
            for key, n in other.values.items():
                values[key] = values.get(key, 0) + n
            if len(values) > EXACT_VALUES:
                values = None
        # An empty side (an all-null batch) says nothing about the type.
        integer = (self.integer or not self.count) and (other.integer or not other.count)
        lo, hi = min(self.min, other.min), max(self.max, other.max)
        low = np.sort(np.concatenate([self.low, other.low]))[:TAIL]
        high = np.sort(np.concatenate([self.high, other.high]))[-TAIL:]
        nulls = self.nulls + other.nulls
        return NumericProfile(count, nulls, lo, hi, mean, m2, sketch, values, integer, low, high)


def _tails(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The TAIL smallest and largest values, sorted (all of them when there are fewer)."""
    if values.size <= TAIL:
        everything = np.sort(values)
        return everything, everything.copy()
    low = np.sort(np.partition(values, TAIL - 1)[:TAIL])
    high = np.sort(np.partition(values, values.size - TAIL)[-TAIL:])
    return low, high


def _few_values(values: np.ndarray) -> dict[float, int] | None:
    """Exact value counts when there are at most 64 distinct values, else None.

    A prefix check first, so continuous columns (the common case) never pay for a full count.
    """
    if np.unique(values[:4096]).size > EXACT_VALUES:
        return None
    counts = pc.value_counts(pa.array(values))
    if len(counts) > EXACT_VALUES:
        return None
    return _pairs(counts.field("values").to_pylist(), counts.field("counts").to_pylist())


@dataclass
class CategoricalProfile:
    """A mergeable summary of one categorical column (values as strings).

    ``counts`` are exact for up to 1,000 distinct values; rows of other values are counted in
    ``other`` and their values fed to a frequent-items sketch. The estimated count of a value is
    ``counts.get(v, 0) + sketch.get_estimate(v)``: a value can have an exact part and a sketched
    part when it first came beyond the cap in one batch and within it in another.
    """

    count: int
    nulls: int
    counts: dict[str, int]
    other: int
    sketch: Any  # datasketches.frequent_strings_sketch | None

    @classmethod
    def of(cls, counts: dict[str, int], nulls: int = 0) -> CategoricalProfile:
        return cls(0, nulls, {}, 0, None)._add(counts)

    def _add(self, counts: dict[str, int]) -> CategoricalProfile:
        merged = dict(self.counts)
        for key, n in counts.items():
            merged[key] = merged.get(key, 0) + n
        other, sketch = self.other, self.sketch
        if len(merged) > CATEGORY_CAP:
            # Keep the most frequent values exact (ties by value, so the result is deterministic).
            ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
            merged = dict(ranked[:CATEGORY_CAP])
            sketch = _copy(sketch)
            for key, n in ranked[CATEGORY_CAP:]:
                sketch.update(key, n)
                other += n
        return CategoricalProfile(self.count + sum(counts.values()), self.nulls, merged, other, sketch)

    def n_unique(self) -> int | None:
        """Distinct values, exact while nothing went beyond the cap, else None (more than 1,000)."""
        return len(self.counts) if self.other == 0 else None

    def frequencies(self) -> dict[str, float]:
        """Count per value: exact values plus the sketch's frequent items; the remaining sketched
        rows, whose values the sketch no longer knows, are pooled under the key :data:`OTHER`."""
        out: dict[str, float] = {k: float(v) for k, v in self.counts.items() if v}
        if self.sketch is None or self.other == 0:
            return out
        known = 0.0
        for item, estimate, *_ in self.sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES):
            out[item] = out.get(item, 0.0) + float(estimate)
            known += float(estimate)
        rest = max(self.other - known, 0.0)
        if rest:
            out[OTHER] = rest
        return out

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        """The profile of the union of both inputs (neither input is changed)."""
        sketch = self.sketch
        if other.sketch is not None:
            sketch = _copy(sketch)
            sketch.merge(other.sketch)
        # The other side's sketched rows join as they are; its exact counts go through the cap.
        base = CategoricalProfile(
            self.count + other.other, self.nulls + other.nulls, self.counts, self.other + other.other, sketch
        )
        return base._add(other.counts)


def _copy(sketch: Any) -> Any:
    """A frequent-items sketch to update without touching the original (a new one for None)."""
    if sketch is None:
        return ds.frequent_strings_sketch(FREQUENT_LG_K)
    return ds.frequent_strings_sketch.deserialize(sketch.serialize())


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass
class TableProfile:
    """Profiles of every monitored column of a batch (or of a merged set of batches)."""

    rows: int
    columns: dict[str, ColumnProfile]

    def merge(self, other: TableProfile) -> TableProfile:
        """Merge two profiles of the same columns. Raises :class:`ProfileError` otherwise."""
        if set(self.columns) != set(other.columns):
            name = sorted(set(self.columns) ^ set(other.columns))[0]
            raise ProfileError(f"column {name!r} is in only one of the profiles", column=name)
        merged: dict[str, ColumnProfile] = {}
        for name, mine in self.columns.items():
            theirs = other.columns[name]
            if isinstance(mine, NumericProfile) and isinstance(theirs, NumericProfile):
                merged[name] = mine.merge(theirs)
            elif isinstance(mine, CategoricalProfile) and isinstance(theirs, CategoricalProfile):
                merged[name] = mine.merge(theirs)
            else:
                raise ProfileError(f"column {name!r} changed kind between profiles", column=name)
        return TableProfile(self.rows + other.rows, merged)

    def to_bytes(self) -> bytes:
        """Compact, versioned msgpack: scalars, value counts and the sketches' own bytes."""
        columns = [[name, _column_to_wire(p)] for name, p in self.columns.items()]
        doc = {"format": "modelkeep.profile", "version": FORMAT_VERSION, "rows": self.rows, "columns": columns}
        return msgspec.msgpack.encode(doc)

    @classmethod
    def from_bytes(cls, data: bytes) -> TableProfile:
        """Inverse of :meth:`to_bytes`. Raises :class:`ProfileError` for corrupt or unknown data."""
        try:
            doc = msgspec.msgpack.decode(data)
            if doc.get("format") != "modelkeep.profile" or doc.get("version") != FORMAT_VERSION:
                raise ProfileError(f"unsupported profile format {doc.get('format')!r} v{doc.get('version')!r}")
            return cls(int(doc["rows"]), {str(name): _column_from_wire(wire) for name, wire in doc["columns"]})
        except ProfileError:
            raise
        except Exception as exc:  # msgspec, datasketches and shape errors alike: the bytes are bad
            raise ProfileError(f"corrupt profile: {exc}") from exc


def _column_to_wire(p: ColumnProfile) -> dict[str, Any]:
    if isinstance(p, NumericProfile):
        values = None if p.values is None else [list(p.values), list(p.values.values())]
        scalars = {"count": p.count, "nulls": p.nulls, "min": p.min, "max": p.max, "mean": p.mean, "m2": p.m2}
        tails = {"low": p.low.astype("<f8").tobytes(), "high": p.high.astype("<f8").tobytes()}
        extra = {"sketch": p.sketch.serialize(), "values": values, "integer": p.integer}
        return {"kind": "numerical", **scalars, **extra, **tails}
    sketch = None if p.sketch is None else p.sketch.serialize()
    counts = {"keys": list(p.counts), "counts": list(p.counts.values())}
    return {"kind": "categorical", "count": p.count, "nulls": p.nulls, **counts, "other": p.other, "sketch": sketch}


def _column_from_wire(w: dict[str, Any]) -> ColumnProfile:
    if w["kind"] == "numerical":
        values = None if w["values"] is None else _pairs(map(float, w["values"][0]), w["values"][1])
        sketch = ds.kll_doubles_sketch.deserialize(bytes(w["sketch"]))
        lo, hi, mean, m2 = (float(w[key]) for key in ("min", "max", "mean", "m2"))
        integer = bool(w["integer"])
        low, high = (np.frombuffer(w[key], dtype="<f8").astype(np.float64) for key in ("low", "high"))
        return NumericProfile(int(w["count"]), int(w["nulls"]), lo, hi, mean, m2, sketch, values, integer, low, high)
    if w["kind"] != "categorical":
        raise ProfileError(f"unknown column kind {w['kind']!r}")
    sketch = None if w["sketch"] is None else ds.frequent_strings_sketch.deserialize(bytes(w["sketch"]))
    return CategoricalProfile(w["count"], w["nulls"], _pairs(map(str, w["keys"]), w["counts"]), w["other"], sketch)


def profile_table(table: pa.Table, schema: Schema, *, k: int = KLL_K) -> TableProfile:
    """Profile the schema's columns of ``table`` (vectorised; about 1 s for 1M rows x 25 columns).

    ``k`` is the KLL sketch size: larger is more accurate (rank error ~ 1/k) and proportionally
    bigger. Raises :class:`ProfileError` naming the column for a missing column or a wrong type.
    """
    columns: dict[str, ColumnProfile] = {}
    for name, kind in schema.columns.items():
        if name not in table.column_names:
            raise ProfileError(f"column {name!r} is missing", column=name)
        raw = table.column(name)
        column = _cast(raw, kind, name)
        if kind is Kind.numerical:
            values = column.to_numpy()
            finite = np.isfinite(values)
            if not finite.all():
                values = values[finite]
            integer = pa.types.is_integer(raw.type)
            columns[name] = NumericProfile.of(values, len(column) - values.size, k, integer=integer)
        else:
            valid = column.drop_null()
            counts = pc.value_counts(valid)
            pairs = _pairs(counts.field("values").to_pylist(), counts.field("counts").to_pylist())
            columns[name] = CategoricalProfile.of(pairs, len(column) - len(valid))
    return TableProfile(table.num_rows, columns)


def reservoir(table: pa.Table, size: int, seed: int) -> pa.Table:
    """A uniform sample of at most ``size`` rows (in table order), reproducible by ``seed``."""
    if table.num_rows <= size:
        return table
    rng = np.random.default_rng(seed)
    return table.take(np.sort(rng.choice(table.num_rows, size, replace=False)))


def merge_reservoirs(a: pa.Table, a_rows: int, b: pa.Table, b_rows: int, size: int, seed: int) -> pa.Table:
    """Merge two uniform samples of populations of ``a_rows`` and ``b_rows`` rows into one uniform
    sample of at most ``size`` rows of their union.

    How many rows come from each side is drawn from the hypergeometric law of a uniform sample of
    the union, so the merged sample is as uniform as one drawn from all the rows at once (given
    each input is a uniform sample of at least that many rows). Columns whose types differ only in width or
    unit (a CSV batch's ``timestamp[ns]`` beside a Parquet batch's ``timestamp[us]``, int64 beside float64)
    are promoted to the wider type.
    """
    a, b = _aligned(a, b)
    if a_rows + b_rows <= size or len(a) + len(b) <= size:
        return pa.concat_tables([a, b], promote_options="permissive")
    rng = np.random.default_rng(seed)
    from_a = int(rng.hypergeometric(a_rows, b_rows, size))
    from_a = min(max(from_a, size - len(b)), len(a))
    parts = [reservoir(a, from_a, seed + 1), reservoir(b, size - from_a, seed + 2)]
    return pa.concat_tables(parts, promote_options="permissive")


def _aligned(a: pa.Table, b: pa.Table) -> tuple[pa.Table, pa.Table]:
    """``b`` with each column that permissive promotion cannot join to ``a``'s (a JSON-lines batch's text
    timestamps beside a Parquet batch's timestamps) cast to ``a``'s type, or both sides as text when even that
    fails: samples only feed reports, so a column kept as text beats refusing the batch."""
    for name in set(a.column_names) & set(b.column_names):
        left, right = a.schema.field(name).type, b.schema.field(name).type
        if left == right:
            continue
        try:
            pa.concat_tables([a.select([name]), b.select([name])], promote_options="permissive")
            continue
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        index = b.column_names.index(name)
        try:
            b = b.set_column(index, name, b.column(name).cast(left))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            a = a.set_column(a.column_names.index(name), name, a.column(name).cast(pa.string()))
            b = b.set_column(index, name, b.column(name).cast(pa.string()))
    return a, b
