"""Per-column drift tests computed from profiles alone, with Evidently 0.7's defaults and rules.

Each method reproduces the statistic Evidently computes on raw rows (``evidently.legacy
.calculations.stattests`` in 0.7.23) and decides the same way, so a verdict here can be read
against an Evidently report. The only difference is the input: where a profile keeps exact value
counts (categories; numbers with at most 64 distinct values) the result is exact; where it keeps
a KLL sketch, cumulative frequencies are off by at most the sketch's rank error
(:meth:`NumericProfile.rank_error`), and the statistic by what that error implies.

Defaults (Evidently's ``_get_default_stattest``): with at most 1,000 reference rows, K-S for
numbers with more than 5 distinct values, chi-square above 2 values, the Z-test for two
proportions otherwise, all at p 0.05; with more, Wasserstein distance normed by the reference's
standard deviation for numbers with more than 5 values and Jensen-Shannon distance otherwise, at
0.1. Rows and distinct values are counted after dropping missing values, as Evidently does.
Evidently's chi-square is a goodness-of-fit test against the reference's shares, not a two-sample
test, so its false-alarm rate exceeds its threshold unless the reference is much larger than the
window (see :func:`_chisquare`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial import distance
from scipy.stats import _stats_py

from monitoring.profile import OTHER, CategoricalProfile, ColumnProfile, NumericProfile

METHODS = ("ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi")
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z"})
DEFAULT_THRESHOLDS = {"ks": 0.05, "chisquare": 0.05, "z": 0.05, "wasserstein": 0.1, "jensenshannon": 0.1, "psi": 0.1}
# Methods a user may choose per kind, as Evidently registers them (its defaults may still pick
# chi-square or Z for a numerical column with few values).
ALLOWED = {
    "numerical": ("ks", "wasserstein", "jensenshannon", "psi"),
    "categorical": ("chisquare", "z", "jensenshannon", "psi"),
}
_SMALL_REFERENCE = 1000  # Evidently switches from p-values to distances above this many reference rows
_FEW_VALUES_FOR_BINS = 20  # numbers with more distinct reference values are binned (Sturges) for PSI/JS


class DriftError(ValueError):
    """A drift test that cannot run: unknown method, a method that does not fit the column's
    kind, or a column without values on one side. ``column`` names the column."""

    def __init__(self, message: str, *, column: str) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict. ``statistic`` is a p-value for ks/chisquare/z, else a distance."""

    column: str
    type: str
    method: str
    statistic: float
    threshold: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "type": self.type,
            "method": self.method,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


def _kind(profile: ColumnProfile) -> str:
    return "numerical" if isinstance(profile, NumericProfile) else "categorical"


def _n_unique(reference: ColumnProfile, current: ColumnProfile | None) -> int | None:
    """Distinct values of both sides together; None when a side has too many to count (> 5 anyway)."""
    profiles = [reference] if current is None else [reference, current]
    keys: set[Any] = set()
    for p in profiles:
        if isinstance(p, NumericProfile):
            if p.values is None:
                return None
            keys.update(p.values)
        else:
            if p.other:
                return None
            keys.update(k for k, n in p.counts.items() if n)
    return len(keys)


def default_method(
    profile: ColumnProfile, reference_rows: int | None = None, current: ColumnProfile | None = None
) -> tuple[str, float]:
    """Evidently 0.7's default method and threshold for a column.

    ``reference_rows`` defaults to the column's non-missing reference rows, which is what
    Evidently counts; ``current`` adds its distinct values to the count that picks between
    chi-square/Z and K-S, as Evidently counts both sides together. Without it the reference
    alone decides, which differs only when the current window brings new values.
    """
    rows = profile.count if reference_rows is None else reference_rows
    n_unique = _n_unique(profile, current)
    few = n_unique is not None and n_unique <= 5
    if rows <= _SMALL_REFERENCE:
        if isinstance(profile, NumericProfile) and not few:
            method = "ks"
        else:
            method = "chisquare" if n_unique is None or n_unique > 2 else "z"
    elif isinstance(profile, NumericProfile) and not few:
        method = "wasserstein"
    else:
        method = "jensenshannon"
    return method, DEFAULT_THRESHOLDS[method]


def column_drift(
    column: str,
    reference: ColumnProfile,
    current: ColumnProfile,
    *,
    method: str | None = None,
    threshold: float | None = None,
) -> ColumnDrift:
    """Test one column for drift from its reference and current profiles.

    Without ``method`` the Evidently default is used; without ``threshold`` the method's default.
    p-value methods drift when p < threshold (ks: p <= threshold), distances when the distance
    >= threshold, exactly as Evidently decides. Raises :class:`DriftError` naming the column for
    an unknown method, one that does not fit the column's kind, a kind mismatch, or a side with
    no values.
    """
    kind = _kind(reference)
    if _kind(current) != kind:
        raise DriftError(f"column {column!r} is {kind} in the reference but not in the current data", column=column)
    if reference.count == 0 or current.count == 0:
        side = "reference" if reference.count == 0 else "current data"
        raise DriftError(f"column {column!r} has no values in the {side}", column=column)
    if method is None:
        method, default = default_method(reference, current=current)
    elif method not in ALLOWED[kind]:
        known = ", ".join(ALLOWED[kind])
        raise DriftError(f"method {method!r} does not apply to {kind} column {column!r} (use {known})", column=column)
    else:
        default = DEFAULT_THRESHOLDS[method]
    threshold = default if threshold is None else threshold
    statistic = float(_STATISTICS[method](reference, current))
    if method == "ks":
        drifted = statistic <= threshold
    elif method in P_VALUE_METHODS:
        drifted = statistic < threshold
    else:
        drifted = statistic >= threshold
    return ColumnDrift(column, kind, method, statistic, threshold, drifted)


# -- distributions ------------------------------------------------------------------------------


def _frequencies(profile: ColumnProfile) -> dict[Any, float]:
    """Count per distinct value (numbers: the sketch's weighted items when values are not kept)."""
    if isinstance(profile, CategoricalProfile):
        return profile.frequencies()
    points, weights = profile.support()
    return dict(zip(points.tolist(), weights.tolist(), strict=True))


def _per_value(reference: ColumnProfile, current: ColumnProfile) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Keys of both sides with each side's counts (0 where absent)."""
    ref, cur = _frequencies(reference), _frequencies(current)
    keys = list(ref.keys() | cur.keys())
    return keys, np.array([ref.get(k, 0.0) for k in keys]), np.array([cur.get(k, 0.0) for k in keys])


def _sturges_edges(lo: float, hi: float, n: int, integer: bool) -> np.ndarray:
    """``np.histogram_bin_edges(data, "sturges")`` from the data's min, max and size alone."""
    width = (hi - lo) / (np.log2(n) + 1.0)
    if integer and width < 1:  # numpy's rule for integer arrays
        width = 1.0
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = int(np.ceil((hi - lo) / width)) if width else 1
    edges: np.ndarray = np.linspace(lo, hi, bins + 1)
    return edges


def _binned(reference: ColumnProfile, current: ColumnProfile, fill_zeroes: bool) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's ``get_binned_data``: shares per Sturges bin over the combined range for numbers
    with more than 20 distinct reference values, per value otherwise; PSI replaces empty shares
    by 1e-4 (or by the smallest share / 1e6 when that is smaller)."""
    n_ref_unique = reference.n_unique()
    if (
        isinstance(reference, NumericProfile)
        and isinstance(current, NumericProfile)
        and (n_ref_unique is None or n_ref_unique > _FEW_VALUES_FOR_BINS)
    ):
        edges = _sturges_edges(
            min(reference.min, current.min),
            max(reference.max, current.max),
            reference.count + current.count,
            reference.integer and current.integer,
        )
        ref, cur = _histogram(reference, edges), _histogram(current, edges)
    else:
        _, ref_counts, cur_counts = _per_value(reference, current)
        ref, cur = ref_counts / reference.count, cur_counts / current.count
    if fill_zeroes:
        ref, cur = _fill_zeroes(ref), _fill_zeroes(cur)
    return ref, cur


def _histogram(profile: NumericProfile, edges: np.ndarray) -> np.ndarray:
    """Shares per bin, numpy's convention (bins closed on the left, the last one on both sides).

    Exact when the profile is, and exact in its kept tails. Between them each sketch item
    stands for ``weight`` rows around it, so the count of rows below an edge is interpolated
    linearly between items rather than dropping a whole weight into one bin.
    """
    points, weights = profile.support()
    if profile.exact():
        exact: np.ndarray = np.histogram(points, bins=edges, weights=weights)[0] / profile.count
        return exact
    n, highs = profile.count, len(profile.high)
    cut_lo, cut_hi = profile.low[-1], profile.high[0]
    cumulative = np.cumsum(weights)
    inner = (points > cut_lo) & (points < cut_hi)
    x = np.concatenate([[cut_lo], points[inner], [cut_hi]])
    below_hi = cumulative[points < cut_hi][-1]
    y = np.concatenate([[cumulative[points <= cut_lo][-1]], (cumulative - weights / 2)[inner], [below_hi]])
    below = np.interp(edges, x, y)  # rows < edge between the cuts
    below = np.where(edges <= cut_lo, np.searchsorted(profile.low, edges, side="left"), below)
    below = np.where(edges > cut_hi, n - highs + np.searchsorted(profile.high, edges, side="left"), below)
    below[-1] = n  # numpy's last bin is closed
    # Whole rows, as in a real histogram: a sliver of interpolated mass in a bin the data
    # leaves empty would otherwise set PSI's replacement for empty bins (smallest share / 1e6).
    rows = np.round(np.diff(below))
    shares: np.ndarray = rows / n
    return shares


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    smallest = shares[shares != 0].min()
    filled = shares.copy()
    filled[filled == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return filled


# -- the methods ----------------------------------------------------------------------------------


def ks_statistic(reference: NumericProfile, current: NumericProfile) -> float:
    """The two-sample K-S statistic sup |F_ref - F_cur| over the jump points of both CDFs."""
    points = np.union1d(reference.support()[0], current.support()[0])
    return float(np.max(np.abs(reference.cdf(points) - current.cdf(points))))


def ks_pvalue(statistic: float, n1: int, n2: int) -> float:
    """``scipy.stats.ks_2samp``'s two-sided p-value (method "auto") for a given statistic.

    Exact for samples up to 10,000 rows, Smirnov's asymptotic law beyond, as scipy chooses.
    scipy exposes the exact computation only privately, so it is looked up defensively and the
    asymptotic law stands in if a scipy release moves it.
    """
    exact = getattr(_stats_py, "_attempt_exact_2kssamp", None)
    if exact is not None and max(n1, n2) <= 10000:
        with np.errstate(all="ignore"):
            ok, _, p = exact(n1, n2, math.gcd(n1, n2), statistic, "two-sided")
        if ok:
            return float(np.clip(p, 0.0, 1.0))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return float(np.clip(stats.kstwo.sf(statistic, np.round(m * n / (m + n))), 0.0, 1.0))


def _ks(reference: ColumnProfile, current: ColumnProfile) -> float:
    assert isinstance(reference, NumericProfile) and isinstance(current, NumericProfile)
    return ks_pvalue(ks_statistic(reference, current), reference.count, current.count)


def _wasserstein(reference: ColumnProfile, current: ColumnProfile) -> float:
    """Wasserstein-1 distance between the two distributions over max(std of reference, 0.001)."""
    assert isinstance(reference, NumericProfile) and isinstance(current, NumericProfile)
    (u, u_w), (v, v_w) = reference.support(), current.support()
    return float(stats.wasserstein_distance(u, v, u_w, v_w)) / max(reference.std(), 0.001)


def _chisquare(reference: ColumnProfile, current: ColumnProfile) -> float:
    """Pearson's chi-square of current counts against reference shares scaled to the current rows.

    Evidently's test, kept as it is so verdicts match: it takes the reference shares as exact, so
    the reference's own sampling noise inflates the statistic by about (1 + n_cur / n_ref). With
    equal sizes and 4 values it flags ~27% of undrifted windows at p < 0.05, not 5% (see
    tests/monitoring/test_calibration.py); it is calibrated only when the reference is much larger.
    """
    _, ref, cur = _per_value(reference, current)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(stats.chisquare(cur, ref * (current.count / reference.count))[1])


def _z(reference: ColumnProfile, current: ColumnProfile) -> float:
    """Two-proportion Z-test on the share of rows not equal to the smallest value."""
    keys, ref, cur = _per_value(reference, current)
    seen_ref = [k for k, n in zip(keys, ref, strict=True) if n]
    if len(seen_ref) == 1 and seen_ref == [k for k, n in zip(keys, cur, strict=True) if n]:
        return 1.0  # one and the same value on both sides
    first = keys.index(min(k for k in keys if k != OTHER))
    n1, n2 = reference.count, current.count
    p1, p2 = (n1 - ref[first]) / n1, (n2 - cur[first]) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


def _jensenshannon(reference: ColumnProfile, current: ColumnProfile) -> float:
    ref, cur = _binned(reference, current, fill_zeroes=False)
    return float(distance.jensenshannon(ref, cur))


def _psi(reference: ColumnProfile, current: ColumnProfile) -> float:
    ref, cur = _binned(reference, current, fill_zeroes=True)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


_STATISTICS = {
    "ks": _ks,
    "chisquare": _chisquare,
    "z": _z,
    "wasserstein": _wasserstein,
    "jensenshannon": _jensenshannon,
    "psi": _psi,
}
