"""Profiles: merged batches equal the profile of the whole, checked against the raw rows.

Exact parts (counts, nulls, min/max, value counts) must match exactly; mean and variance within
1e-9 relative (Chan's merge only reorders floating-point sums); quantiles and CDFs within the
merged KLL sketch's documented normalized rank error over all ranks (``rank_error()``, 99%
confidence; 0.36% at k=1000). Categorical counts beyond the cap are within the frequent-items
sketch's a-priori error.
"""

from __future__ import annotations

import itertools
import math

import datasketches as ds
import numpy as np
import pyarrow as pa
import pytest

from monitoring.profile import (
    CATEGORY_CAP,
    EXACT_VALUES,
    CategoricalProfile,
    Kind,
    NumericProfile,
    ProfileError,
    Schema,
    TableProfile,
    conform,
    infer_schema,
    merge_reservoirs,
    profile_table,
    reservoir,
)

SEEDS = range(8)
SCHEMA = Schema(
    columns={
        "normal": Kind.numerical,
        "skewed": Kind.numerical,
        "few": Kind.numerical,
        "count": Kind.numerical,
        "level": Kind.categorical,
        "city": Kind.categorical,
    }
)


def make_table(rng: np.random.Generator, n: int) -> pa.Table:
    """Continuous, skewed and low-cardinality numbers with nulls, NaN and inf; categories with
    nulls; and a high-cardinality categorical that overflows the exact-count cap."""
    normal = rng.normal(3.0, 2.0, n)
    normal[rng.random(n) < 0.02] = np.nan
    skewed = np.exp(rng.normal(0, 1.5, n))
    skewed[rng.random(n) < 0.01] = np.inf
    few = rng.choice([0.5, 1.5, 2.5, 10.0], n)
    level = rng.choice(np.array(["a", "b", "c", "d"], dtype=object), n, p=[0.4, 0.3, 0.2, 0.1])
    level[rng.random(n) < 0.05] = None
    cities = np.array([f"city-{i}" for i in range(3000)], dtype=object)
    city = cities[np.minimum(rng.zipf(1.3, n), 3000) - 1]
    return pa.table(
        {
            "normal": pa.array(normal, mask=rng.random(n) < 0.03),
            "skewed": skewed,
            "few": few,
            "count": pa.array(rng.poisson(30, n), pa.int64()),
            "level": level,
            "city": city,
        }
    )


def split(rng: np.random.Generator, table: pa.Table) -> list[pa.Table]:
    cuts = np.sort(rng.choice(np.arange(1, table.num_rows), rng.integers(2, 7), replace=False))
    bounds = [0, *cuts.tolist(), table.num_rows]
    return [table.slice(a, b - a) for a, b in itertools.pairwise(bounds)]


def merged_profile(rng: np.random.Generator, parts: list[pa.Table]) -> TableProfile:
    """Merge the batches' profiles in a random tree, as buckets and replicas would."""
    profiles = [profile_table(p, SCHEMA) for p in parts]
    while len(profiles) > 1:
        i, j = sorted(rng.choice(len(profiles), 2, replace=False))
        right = profiles.pop(j)
        profiles[i] = profiles[i].merge(right)
    return profiles[0]


def finite(table: pa.Table, name: str) -> np.ndarray:
    values = table.column(name).to_numpy().astype(np.float64)
    return values[np.isfinite(values)]


@pytest.mark.parametrize("seed", SEEDS)
def test_merged_batches_match_the_raw_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    table = make_table(rng, int(rng.integers(20_000, 60_000)))
    merged = merged_profile(rng, split(rng, table))
    assert merged.rows == table.num_rows
    for name in ("normal", "skewed", "few", "count"):
        raw = finite(table, name)
        p = merged.columns[name]
        assert isinstance(p, NumericProfile)
        assert (p.count, p.nulls) == (raw.size, table.num_rows - raw.size)
        assert (p.min, p.max) == (raw.min(), raw.max())
        assert p.mean == pytest.approx(raw.mean(), rel=1e-9)
        assert p.variance() == pytest.approx(raw.var(), rel=1e-9)
        values, counts = np.unique(raw, return_counts=True)
        if values.size <= EXACT_VALUES:
            assert p.values == dict(zip(values.tolist(), counts.tolist(), strict=True))
            assert p.rank_error() == 0.0
        else:
            assert p.values is None and p.n_unique() is None
        check_quantiles(p, np.sort(raw))


def check_quantiles(p: NumericProfile, raw: np.ndarray) -> None:
    """CDF and quantiles within the sketch's rank error of the exact ones."""
    eps = p.rank_error() or p.sketch.normalized_rank_error(True)
    points = np.quantile(raw, np.linspace(0.01, 0.99, 41))
    exact_cdf = np.searchsorted(raw, points, side="right") / raw.size
    assert np.max(np.abs(p.cdf(points) - exact_cdf)) <= eps
    ranks = np.linspace(0.0, 1.0, 21)
    for rank, q in zip(ranks, p.quantiles(ranks), strict=True):
        below = np.searchsorted(raw, q, side="left") / raw.size
        upto = np.searchsorted(raw, q, side="right") / raw.size
        assert below - eps <= rank <= upto + eps


@pytest.mark.parametrize("seed", SEEDS)
def test_categorical_merge_counts(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    table = make_table(rng, 30_000)
    merged = merged_profile(rng, split(rng, table))
    level = merged.columns["level"]
    assert isinstance(level, CategoricalProfile)
    raw = table.column("level").to_pylist()
    expected = {k: raw.count(k) for k in {"a", "b", "c", "d"}}
    assert level.counts == expected and level.other == 0 and level.sketch is None
    assert (level.count, level.nulls) == (sum(expected.values()), raw.count(None))

    city = merged.columns["city"]
    assert isinstance(city, CategoricalProfile)
    values, counts = np.unique(np.array(table.column("city").to_pylist()), return_counts=True)
    truth = dict(zip(values.tolist(), counts.tolist(), strict=True))
    assert len(truth) > CATEGORY_CAP and len(city.counts) == CATEGORY_CAP and city.n_unique() is None
    assert city.count == table.num_rows == sum(city.counts.values()) + city.other
    sketch = city.sketch
    assert sketch is not None and sketch.total_weight == city.other
    for value, n in truth.items():
        exact = city.counts.get(value, 0)
        # The frequent-items sketch's guarantee: the true weight lies between its bounds.
        assert exact <= n and sketch.get_lower_bound(value) <= n - exact <= sketch.get_upper_bound(value)
    # The most frequent values never overflow the cap, so they are counted exactly.
    top = sorted(truth, key=lambda v: -truth[v])[:10]
    assert all(city.counts[v] == truth[v] for v in top)


@pytest.mark.parametrize("seed", SEEDS)
def test_bytes_round_trip(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    profile = merged_profile(rng, split(rng, make_table(rng, 20_000)))
    data = profile.to_bytes()
    back = TableProfile.from_bytes(data)
    assert back.rows == profile.rows and list(back.columns) == list(profile.columns)
    for name, p in profile.columns.items():
        q = back.columns[name]
        if isinstance(p, NumericProfile):
            assert isinstance(q, NumericProfile)
            fields = ("count", "nulls", "min", "max", "mean", "m2", "values", "integer")
            assert [getattr(q, f) for f in fields] == [getattr(p, f) for f in fields]
            assert q.sketch.serialize() == p.sketch.serialize()
        else:
            assert isinstance(q, CategoricalProfile)
            assert (q.count, q.nulls, q.counts, q.other) == (p.count, p.nulls, p.counts, p.other)
            assert (q.sketch is None) == (p.sketch is None)
            if p.sketch is not None:  # its hash map may be laid out differently once rebuilt
                items = sorted(map(tuple, p.sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)))
                again = sorted(map(tuple, q.sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)))
                assert (q.sketch.total_weight, again) == (p.sketch.total_weight, items)
    # Merging after a round trip is the same as merging before it.
    twice, again = back.merge(back).columns["few"], profile.merge(profile).columns["few"]
    assert isinstance(twice, NumericProfile) and isinstance(again, NumericProfile)
    assert (twice.count, twice.values, twice.m2) == (again.count, again.values, again.m2)


def test_small_sketched_profiles_are_exact_through_their_tails() -> None:
    """A k=200 sketch estimates from ~200 rows on; up to 1,024 rows the kept tails hold them all."""
    rng = np.random.default_rng(4)
    schema = Schema(columns={"x": Kind.numerical})
    for n in (300, 700, 1024):
        raw = np.round(rng.normal(size=n), 2)
        parts = [profile_table(pa.table({"x": part}), schema, k=200) for part in np.array_split(raw, 3)]
        merged = parts[0].merge(parts[1]).merge(parts[2]).columns["x"]
        assert isinstance(merged, NumericProfile) and merged.sketch.is_estimation_mode() and merged.exact()
        points, weights = merged.support()
        values, counts = np.unique(raw, return_counts=True)
        np.testing.assert_array_equal(points, values)
        np.testing.assert_array_equal(weights, counts)


def test_empty_and_all_missing_batches_merge_as_identity() -> None:
    table = pa.table({"x": pa.array([None, None], pa.float64()), "c": pa.array([None, None], pa.string())})
    schema = Schema(columns={"x": Kind.numerical, "c": Kind.categorical})
    empty = profile_table(table, schema)
    x = empty.columns["x"]
    assert isinstance(x, NumericProfile) and (x.count, x.nulls, x.min, x.max) == (0, 2, math.inf, -math.inf)
    full = profile_table(pa.table({"x": pa.array([1, 2, 3], pa.int64()), "c": ["u", "v", "u"]}), schema)
    merged = empty.merge(full).columns["x"]
    assert isinstance(merged, NumericProfile)
    assert (merged.count, merged.nulls, merged.mean, merged.integer) == (3, 2, 2.0, True)
    assert TableProfile.from_bytes(empty.to_bytes()).columns["x"].count == 0


def test_profile_errors() -> None:
    profile = profile_table(pa.table({"x": [1.0]}), Schema(columns={"x": Kind.numerical}))
    other = profile_table(pa.table({"y": [1.0]}), Schema(columns={"y": Kind.numerical}))
    with pytest.raises(ProfileError) as info:
        profile.merge(other)
    assert info.value.column == "x"
    for bad in (b"", b"\x00garbage", profile.to_bytes()[:-3]):
        with pytest.raises(ProfileError):
            TableProfile.from_bytes(bad)
    with pytest.raises(ProfileError, match="unsupported profile format"):
        TableProfile.from_bytes(profile.to_bytes().replace(b"modelkeep.profile", b"modelkeep.profilX"))
    with pytest.raises(ProfileError) as info:
        profile_table(pa.table({"x": ["a"]}), Schema(columns={"x": Kind.numerical}))
    assert info.value.column == "x"


def test_infer_schema_follows_evidentlys_rules() -> None:
    table = pa.table(
        {
            "id": ["r1", "r2", "r3", "r4"],
            "ts": pa.array([1, 2, 3, 4], pa.timestamp("s")),
            "amount": [1.5, 2.5, 3.5, 4.5],
            "items": pa.array(range(100, 104), pa.int64()),
            "many": pa.array([0, 1, 2, 3], pa.int8()),
            "flag": [True, False, True, True],
            "country": pa.array(["de", "fr", "de", "it"]).dictionary_encode(),
            "score": [0.1, 0.2, 0.3, 0.4],
            "label": [1, 0, 1, 1],
        }
    )
    schema = infer_schema(table, prediction="score", target="label", id="id", timestamp="ts", numerical=["many"])
    assert schema.columns == {
        "amount": Kind.numerical,
        "items": Kind.categorical,  # integers with <= 10 distinct values
        "many": Kind.numerical,  # stated
        "flag": Kind.categorical,
        "country": Kind.categorical,
        "score": Kind.numerical,
    }
    assert Schema.from_json(schema.to_json()) == schema
    only = infer_schema(table, columns=["amount"], prediction="score", timestamp="ts", exclude=["flag"])
    assert list(only.columns) == ["amount", "score"]
    with pytest.raises(ProfileError) as info:
        infer_schema(table, id="id")  # ts is a timestamp and not named as one
    assert info.value.column == "ts"
    with pytest.raises(ProfileError) as info:
        infer_schema(table, prediction="nope")
    assert info.value.column == "nope"
    with pytest.raises(ProfileError) as info:
        infer_schema(table, timestamp="ts", numerical=["country"])
    assert info.value.column == "country"
    with pytest.raises(ProfileError):
        Schema.from_json({"columns": [{"name": "x", "kind": "text"}]})


def test_conform_checks_the_batch_against_the_schema() -> None:
    schema = Schema(columns={"amount": Kind.numerical, "items": Kind.categorical}, id="id", target="label")
    batch = pa.table(
        {"items": pa.array([1.0, None, 3.0]), "amount": pa.array([1, 2, 3], pa.int32()), "id": ["a", "b", "c"]}
    )
    out = conform(batch, schema)
    assert out.column_names == ["amount", "items", "id"]
    assert out.column("items").to_pylist() == ["1", None, "3"]  # floats from a nullable int column keep their labels
    ints = conform(pa.table({"amount": [1.5, 2.0, 2.0], "items": pa.array([1, 2, 3], pa.int64())}), schema)
    assert ints.column("items").to_pylist() == ["1", "2", "3"]
    assert conform(pa.table({"amount": pa.nulls(2), "items": pa.nulls(2)}), schema).num_rows == 2
    cases = [
        (pa.table({"amount": [1.0]}), "items"),  # missing
        (pa.table({"amount": [1.0], "items": ["x"], "extra": [1]}), "extra"),  # not in the baseline
        (pa.table({"amount": ["1.0"], "items": ["x"]}), "amount"),  # text where numbers were
        (pa.table({"amount": [1.0], "items": pa.array([1], pa.timestamp("s"))}), "items"),
    ]
    for table, column in cases:
        with pytest.raises(ProfileError) as info:
            conform(table, schema)
        assert info.value.column == column
    with pytest.raises(ProfileError, match="no rows"):
        conform(pa.table({"amount": pa.array([], pa.float64()), "items": pa.array([], pa.string())}), schema)


def test_reservoir_is_a_reproducible_uniform_sample() -> None:
    table = pa.table({"i": np.arange(10_000)})
    sample = reservoir(table, 500, seed=3)
    assert sample.num_rows == 500 and sample.equals(reservoir(table, 500, seed=3))
    rows = sample.column("i").to_numpy()
    assert np.all(np.diff(rows) > 0) and rows.max() < 10_000
    assert reservoir(table.slice(0, 10), 500, seed=3).num_rows == 10


def test_merged_reservoirs_draw_in_proportion_to_the_populations() -> None:
    """Rows of a population of 30,000 and one of 10,000: a merged sample of 400 holds on
    average 300 of the first (hypergeometric, sd ~8.5); over 200 merges the mean is within 2."""
    a = pa.table({"side": np.zeros(400, dtype=np.int8)})
    b = pa.table({"side": np.ones(400, dtype=np.int8)})
    from_a = []
    for seed in range(200):
        merged = merge_reservoirs(a, 30_000, b, 10_000, 400, seed)
        assert merged.num_rows == 400
        from_a.append(400 - int(np.sum(merged.column("side").to_numpy())))
    assert abs(np.mean(from_a) - 300) < 2
    small = merge_reservoirs(a.slice(0, 5), 5, b.slice(0, 7), 7, 400, 0)
    assert small.num_rows == 12


def test_samples_of_batches_in_different_formats_merge() -> None:
    """A JSON-lines batch brings its timestamps as text; its sample still merges with a Parquet batch's sample of
    the same hour (as timestamps when the text parses, as text otherwise), instead of failing the batch."""
    from datetime import UTC, datetime

    from monitoring.profile import merge_reservoirs

    parquet = pa.table({"ts": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * 3, pa.timestamp("us", tz="UTC"))})
    merged = merge_reservoirs(parquet, 3, pa.table({"ts": ["2026-01-01T00:30:00+00:00"] * 2}), 2, 10, seed=1)
    assert merged.schema.field("ts").type == pa.timestamp("us", tz="UTC") and merged.num_rows == 5
    assert merged.column("ts")[4].as_py() == datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    odd = merge_reservoirs(parquet, 3, pa.table({"ts": ["yesterday", "today"]}), 2, 10, seed=1)
    assert odd.schema.field("ts").type == pa.string() and sorted(odd.column("ts").to_pylist())[-2:] == [
        "today",
        "yesterday",
    ]
