"""Every drift method, computed from profiles, against Evidently 0.7 itself on the same raw rows.

For 24 seeds (no drift and shifts of several sizes, so statistics land on both sides of and near
the thresholds; 400-20,000 reference rows, 300-8,000 current rows profiled in three batches and
merged, as buckets are), one lean Evidently report runs 22 ``ValueDrift`` metrics with an explicit
``DataDefinition``: every method on a continuous column, an integer column with 21-64 distinct
values, a categorical and a binary column, plus Evidently's default on every column, which also
checks that both pick the same default method and threshold.

The bound on the statistic, per method (ε = ε_ref + ε_cur, each profile's documented KLL rank
error over all ranks at 99% confidence, ``rank_error()``: 0 when exact, 0.36% at k=1000):

* Exact profiles (categories, numbers with at most 64 distinct values, columns of at most ~2,000
  rows, which a k=1000 sketch holds whole): every method to 1e-9, the same arithmetic on the
  same counts.
* ks on sketches: the K-S statistic is a supremum of CDF differences, so the documented guarantee
  bounds it directly, |D - D̂| <= ε. Evidently's p-value must lie in [p(D̂ + ε), p(D̂ - ε)].
* wasserstein (in units of the reference's std), jensenshannon: 2ε; psi: 6ε. No useful
  worst-case bound follows from a rank guarantee for these (Wasserstein integrates the rank error
  over the value range; PSI's log ratio is unbounded near empty bins), so the bound is a multiple
  of ε set at ~1.5x the largest error measured over 2,000 random cases (normal, lognormal,
  uniform, bimodal; 3k-100k vs 1k-30k rows; the current side whole or merged from three
  batches): 1.32ε, 1.08ε and 3.71ε.

Decisions must be identical, except when the threshold lies within that bound of the statistic
(for ks: inside the p-value interval), where the sketch cannot tell the two sides apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from monitoring.drift import DriftError, _sturges_edges, column_drift, ks_pvalue, ks_statistic
from monitoring.profile import Kind, NumericProfile, Schema, TableProfile, profile_table

# Evidently's own modules still import numpy.core.
pytestmark = pytest.mark.filterwarnings("ignore:numpy.core is deprecated:DeprecationWarning")

SEEDS = range(24)
NUMERIC_METHODS = ("ks", "wasserstein", "jensenshannon", "psi")
CATEGORICAL_METHODS = ("chisquare", "z", "jensenshannon", "psi")
EXACT = 1e-9
FACTOR = {"wasserstein": 2.0, "jensenshannon": 2.0, "psi": 6.0}
DISPLAY = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "PSI": "psi",
}
SCHEMA = Schema(
    columns={
        "x": Kind.numerical,
        "mid": Kind.numerical,
        "few": Kind.numerical,
        "cat": Kind.categorical,
        "bin": Kind.categorical,
    }
)
REQUESTS: list[tuple[str, str | None]] = [
    *((c, m) for c in ("x", "mid") for m in (None, *NUMERIC_METHODS)),
    ("few", None),
    ("few", "jensenshannon"),
    *((c, m) for c in ("cat", "bin") for m in (None, *CATEGORICAL_METHODS)),
]


@pytest.fixture(scope="module")
def evidently() -> SimpleNamespace:
    """Evidently, imported once for the module (the import alone takes ~7 s)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    return SimpleNamespace(DataDefinition=DataDefinition, Dataset=Dataset, Report=Report, ValueDrift=ValueDrift)


def make_frames(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_ref = int(rng.choice([400, 1000, 3000, 20_000]))
    n_cur = int(rng.choice([300, 2000, 8000]))
    shift = float(rng.choice([0.0, 0.03, 0.08, 0.15, 0.3]))
    shape = seed % 4

    def frame(n: int, s: float) -> pd.DataFrame:
        if shape == 0:
            x = rng.normal(s, 1.0, n)
        elif shape == 1:
            x = np.exp(rng.normal(s, 1.0, n))
        elif shape == 2:
            x = rng.uniform(s, 1.0 + s, n)
        else:
            x = np.where(rng.random(n) < 0.3, rng.normal(-2.0 + s, 0.5, n), rng.normal(1.0, 1.0, n))
        x[rng.random(n) < 0.02] = np.nan
        cat_p = np.array([0.4, 0.3, 0.2, 0.1]) + np.array([-1.0, 0.0, 0.0, 1.0]) * s / 2
        return pd.DataFrame(
            {
                "x": x,
                "mid": rng.binomial(40, 0.5 + s / 4, n).astype(np.int64),
                "few": rng.choice([1.0, 2.0, 3.0], n, p=[0.5 - s / 2, 0.3, 0.2 + s / 2]),
                "cat": rng.choice(np.array(["a", "b", "c", "d"], dtype=object), n, p=cat_p),
                "bin": rng.choice(np.array(["u", "v"], dtype=object), n, p=[0.5 + s / 2, 0.5 - s / 2]),
            }
        )

    return frame(n_ref, 0.0), frame(n_cur, shift)


def profile(frame: pd.DataFrame, batches: int) -> TableProfile:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    parts = np.array_split(np.arange(table.num_rows), batches)
    profiles = [profile_table(table.slice(int(p[0]), len(p)), SCHEMA) for p in parts]
    merged = profiles[0]
    for p in profiles[1:]:
        merged = merged.merge(p)
    return merged


@dataclass(frozen=True)
class Verdict:
    method: str
    statistic: float
    threshold: float
    drifted: bool


def run_evidently(ev: SimpleNamespace, ref: pd.DataFrame, cur: pd.DataFrame) -> dict[tuple[str, str | None], Verdict]:
    """One report with every requested metric; verdicts keyed by (column, requested method)."""
    definition = ev.DataDefinition(numerical_columns=["x", "mid", "few"], categorical_columns=["cat", "bin"])
    metrics = [ev.ValueDrift(column=c, method=m) for c, m in REQUESTS]
    snapshot = ev.Report(metrics, include_tests=True).run(
        ev.Dataset.from_pandas(cur, data_definition=definition),
        ev.Dataset.from_pandas(ref, data_definition=definition),
    )
    result = snapshot.dict()
    status = {t["metric_config"]["metric_id"]: str(t["status"]) for t in result["tests"]}
    verdicts: dict[tuple[str, str | None], Verdict] = {}
    for m in result["metrics"]:
        config = m["config"]
        requested = None if config["method"] in DISPLAY else config["method"]
        method = DISPLAY.get(config["method"], config["method"])
        drifted = status[m["id"]].endswith("FAIL")
        verdicts[(config["column"], requested)] = Verdict(method, float(m["value"]), config["threshold"], drifted)
    assert set(verdicts) == set(REQUESTS)
    return verdicts


def error_of(reference: Any, current: Any) -> float:
    if isinstance(reference, NumericProfile) and isinstance(current, NumericProfile):
        return reference.rank_error() + current.rank_error()
    return 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_every_method_agrees_with_evidently(evidently: SimpleNamespace, seed: int) -> None:
    ref_frame, cur_frame = make_frames(seed)
    reference, current = profile(ref_frame, 1), profile(cur_frame, 3)
    expected = run_evidently(evidently, ref_frame, cur_frame)
    for (column, requested), theirs in expected.items():
        ref, cur = reference.columns[column], current.columns[column]
        ours = column_drift(column, ref, cur, method=requested)
        label = f"seed {seed}, {column}, {requested or 'default'}: ours {ours}, Evidently {theirs}"
        assert (ours.method, ours.threshold) == (theirs.method, theirs.threshold), label
        eps = error_of(ref, cur)
        if eps == 0.0:
            low, high = theirs.statistic - EXACT, theirs.statistic + EXACT
            assert low <= ours.statistic <= high, label
        elif ours.method == "ks":
            assert isinstance(ref, NumericProfile) and isinstance(cur, NumericProfile)
            d = ks_statistic(ref, cur)
            low, high = (
                ks_pvalue(min(d + eps, 1.0), ref.count, cur.count),
                ks_pvalue(max(d - eps, 0.0), ref.count, cur.count),
            )
            assert low - EXACT <= theirs.statistic <= high + EXACT, label
        else:
            bound = FACTOR[ours.method] * eps
            low, high = ours.statistic - bound, ours.statistic + bound
            assert abs(ours.statistic - theirs.statistic) <= bound, label
        if ours.drifted != theirs.drifted:
            assert low <= ours.threshold <= high, f"decisions differ away from the threshold: {label}"


def test_sturges_edges_match_numpy() -> None:
    """The bins are rebuilt from min, max and size alone, including numpy's rule for integers."""
    rng = np.random.default_rng(5)
    samples = [
        rng.normal(size=1234),
        np.exp(rng.normal(size=99_999)),
        rng.integers(0, 30, 500_000),  # integer width would fall below 1: numpy widens it
        rng.integers(-5, 200, 3_000),
        np.full(50, 7.0),
    ]
    for data in samples:
        expected = np.histogram_bin_edges(data, bins="sturges")
        edges = _sturges_edges(float(data.min()), float(data.max()), data.size, data.dtype.kind == "i")
        np.testing.assert_array_equal(edges, expected)


def test_ks_pvalue_matches_scipy() -> None:
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(9)
    for n1, n2 in [(50, 70), (1000, 1000), (900, 12_000), (20_000, 20_000)]:
        a, b = rng.normal(size=n1), rng.normal(0.05, 1.0, n2)
        expected = ks_2samp(a, b)
        assert ks_pvalue(float(expected.statistic), n1, n2) == pytest.approx(expected.pvalue, rel=1e-12, abs=1e-300)


def test_errors_name_the_column() -> None:
    schema = Schema(columns={"n": Kind.numerical, "c": Kind.categorical})
    full = profile_table(pa.table({"n": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}), schema)
    empty = profile_table(pa.table({"n": pa.nulls(2, pa.float64()), "c": pa.nulls(2, pa.string())}), schema)
    cases: list[tuple[str, Any, Any, str | None]] = [
        ("n", full.columns["n"], full.columns["n"], "chisquare"),  # a categorical method on numbers
        ("c", full.columns["c"], full.columns["c"], "ks"),
        ("n", full.columns["n"], full.columns["n"], "kl_div"),
        ("n", full.columns["n"], empty.columns["n"], None),
        ("c", empty.columns["c"], full.columns["c"], None),
        ("n", full.columns["n"], full.columns["c"], None),  # kinds differ
    ]
    for column, ref, cur, method in cases:
        with pytest.raises(DriftError) as info:
            column_drift(column, ref, cur, method=method)
        assert info.value.column == column
