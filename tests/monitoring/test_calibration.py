"""Calibration on simulated data: false alarms under no drift, power under the issue's shifts.

Large reference (20,000 rows), 5,000-row windows: the defaults are distances (normed Wasserstein
for numbers, Jensen-Shannon for categories) at 0.1, which are effect sizes, not tests, so their
false-alarm rate is whatever sampling noise gives. At these sizes the noise is ~0.01-0.04
against a threshold of 0.1, so the stated rate is "practically never": at most 1% of windows
per column. That bound fails if the Wasserstein distance were not normed by the reference's
standard deviation (the ``wide`` column has sd 1,000) or if sketch error were large.

Small reference (1,000 rows): the defaults are K-S, chi-square and Z at alpha = 0.05, drawn afresh
every repetition so the rate is the unconditional one. K-S and Z are two-sample tests, so their
stated rate is alpha. Evidently's chi-square is not: it tests the current counts against the
reference's shares as if those were exact, so the reference's own sampling noise inflates the
statistic by (1 + n_cur / n_ref), and its stated rate is P(chi2(k-1) > q(1 - alpha) / (1 + n_cur /
n_ref)): 27% for 4 levels and equal sizes, approaching alpha only when the reference is much larger
than the window. We keep Evidently's test (its verdicts must match) and state its real rate. Each
observed rate must stay within three binomial standard errors of its stated rate.

Power: a 0.5 sd mean shift and a categorical re-weighted 0.5/0.3/0.2 -> 0.3/0.3/0.4 must be flagged
in at least 95% of 5,000-row windows, the untouched columns in at most 5%.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from monitoring.profile import Kind, Schema, TableProfile, profile_table
from monitoring.spec import MonitorSpec, check

WINDOWS = 200
SCHEMA = Schema(
    columns={
        "shifted": Kind.numerical,
        "plain": Kind.numerical,
        "wide": Kind.numerical,
        "skewed": Kind.numerical,
        "reweighted": Kind.categorical,
        "steady": Kind.categorical,
        "rare": Kind.categorical,
    }
)
LEVELS = np.array([f"v{i}" for i in range(50)], dtype=object)
RARE_P = 1.0 / np.arange(1, 51) / np.sum(1.0 / np.arange(1, 51))


def table(rng: np.random.Generator, n: int, *, drift: bool) -> pa.Table:
    reweighted = [0.3, 0.3, 0.4] if drift else [0.5, 0.3, 0.2]
    return pa.table(
        {
            "shifted": rng.normal(0.5 if drift else 0.0, 1.0, n),
            "plain": rng.normal(10.0, 2.0, n),
            "wide": rng.normal(0.0, 1000.0, n),
            "skewed": np.exp(rng.normal(0.0, 1.0, n)),
            "reweighted": rng.choice(LEVELS[:3], n, p=reweighted),
            "steady": rng.choice(LEVELS[:8], n),
            "rare": rng.choice(LEVELS, n, p=RARE_P),
        }
    )


def flag_rates(reference: TableProfile, rng: np.random.Generator, *, drift: bool) -> dict[str, float]:
    flags = dict.fromkeys(SCHEMA.columns, 0)
    for _ in range(WINDOWS):
        result = check(reference, profile_table(table(rng, 5000, drift=drift), SCHEMA), SCHEMA, MonitorSpec())
        expected = {"numerical": "wasserstein", "categorical": "jensenshannon"}
        assert all(c.method == expected[c.type] and c.threshold == 0.1 for c in result.columns)
        for name in result.drifted:
            flags[name] += 1
    return {name: n / WINDOWS for name, n in flags.items()}


def test_distance_defaults_stay_quiet_without_drift() -> None:
    rng = np.random.default_rng(11)
    reference = profile_table(table(rng, 20_000, drift=False), SCHEMA)
    rates = flag_rates(reference, rng, drift=False)
    assert all(rate <= 0.01 for rate in rates.values()), rates


def test_shifts_are_flagged_and_untouched_columns_are_not() -> None:
    rng = np.random.default_rng(12)
    reference = profile_table(table(rng, 20_000, drift=False), SCHEMA)
    rates = flag_rates(reference, rng, drift=True)
    assert rates["shifted"] >= 0.95 and rates["reweighted"] >= 0.95, rates
    untouched = {name: rate for name, rate in rates.items() if name not in ("shifted", "reweighted")}
    assert all(rate <= 0.05 for rate in untouched.values()), rates


@pytest.mark.parametrize("n_cur", [1000, 100])
def test_p_value_defaults_hold_their_stated_rate_without_drift(n_cur: int) -> None:
    """K-S on a continuous column, chi-square on 4 levels, Z on 2; 1,000 reference rows."""
    schema = Schema(columns={"x": Kind.numerical, "levels": Kind.categorical, "flag": Kind.categorical})
    alpha, repetitions, n_ref = 0.05, 1000, 1000
    rng = np.random.default_rng(13)
    flags = dict.fromkeys(schema.columns, 0)

    def draw(n: int) -> pa.Table:
        return pa.table(
            {
                "x": rng.normal(0.0, 1.0, n),
                "levels": rng.choice(LEVELS[:4], n, p=[0.4, 0.3, 0.2, 0.1]),
                "flag": rng.choice(LEVELS[:2], n, p=[0.7, 0.3]),
            }
        )

    for _ in range(repetitions):
        result = check(profile_table(draw(n_ref), schema), profile_table(draw(n_cur), schema), schema, MonitorSpec())
        assert [c.method for c in result.columns] == ["ks", "chisquare", "z"]
        for name in result.drifted:
            flags[name] += 1
    chisquare_rate = float(stats.chi2.sf(stats.chi2.isf(alpha, 3) / (1 + n_cur / n_ref), 3))
    stated = {"x": alpha, "levels": chisquare_rate, "flag": alpha}
    for name, rate in stated.items():
        observed = flags[name] / repetitions
        slack = 3 * math.sqrt(rate * (1 - rate) / repetitions)
        assert observed <= rate + slack, (name, observed, rate)
