"""Exact and Wilson rate bounds, p-values and plans against the verified reference vectors and
scipy reference computations, plus property tests of their invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from gates.stats import binomial

ALPHA = 0.05


def test_clopper_pearson_matches_verified_vector_9950_of_10000() -> None:
    b = binomial.clopper_pearson(9950, 10000, 0.994, ALPHA)
    assert b.lower == pytest.approx(0.993676, abs=5e-7)
    assert b.upper == pytest.approx(0.996102, abs=5e-7)
    assert b.p_greater == pytest.approx(0.107, abs=5e-4)
    assert b.p_less == pytest.approx(0.916, abs=5e-4)
    # Two-sided 95 % = one-sided bounds at alpha 0.025 each.
    two = binomial.clopper_pearson(9950, 10000, 0.994, 0.025)
    assert (two.lower, two.upper) == pytest.approx((0.993413, 0.996287), abs=5e-7)


def test_wilson_matches_verified_vector() -> None:
    assert binomial.wilson(9950, 10000, 0.99, ALPHA).lower == pytest.approx(0.993698, abs=5e-7)
    two = binomial.wilson(9950, 10000, 0.99, 0.025)
    assert (two.lower, two.upper) == pytest.approx((0.993415, 0.996205), abs=5e-7)


@pytest.mark.parametrize(
    ("tau", "p", "passes"),
    [(0.99, 2.1e-8, True), (0.993, 0.0073, True), (0.994, 0.107, False), (0.996, None, False)],
)
def test_verified_verdicts_for_9950_of_10000(tau: float, p: float | None, passes: bool) -> None:
    b = binomial.clopper_pearson(9950, 10000, tau, ALPHA)
    if p is not None:
        assert b.p_greater == pytest.approx(p, rel=0.05)
    assert (b.p_greater <= ALPHA) is passes
    assert (b.lower >= tau) is passes


def test_failure_budget_vector_7_of_500() -> None:
    # Failure rate <= 3 %: pass iff the upper bound <= 0.03; p = P_{0.03}(F <= 7).
    b = binomial.clopper_pearson(7, 500, 0.03, ALPHA)
    assert (b.lower, b.upper) == pytest.approx((0.0066, 0.0261), abs=5e-5)
    assert b.p_less == pytest.approx(0.0168, abs=5e-5)


@given(n=st.integers(1, 3000), data=st.data())
def test_clopper_pearson_equals_scipy(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n))
    tau = data.draw(st.floats(0.01, 0.99))
    b = binomial.clopper_pearson(k, n, tau, ALPHA)
    ref = stats.binomtest(k, n).proportion_ci(1 - 2 * ALPHA, method="exact")
    assert b.lower == pytest.approx(ref.low, abs=1e-9)
    assert b.upper == pytest.approx(ref.high, abs=1e-9)
    assert b.p_greater == pytest.approx(stats.binomtest(k, n, tau, alternative="greater").pvalue, rel=1e-6, abs=1e-12)
    assert b.p_less == pytest.approx(stats.binomtest(k, n, tau, alternative="less").pvalue, rel=1e-6, abs=1e-12)


@given(n=st.integers(5, 3000), data=st.data())
def test_wilson_equals_scipy(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n))
    b = binomial.wilson(k, n, 0.5, ALPHA)
    ref = stats.binomtest(k, n).proportion_ci(1 - 2 * ALPHA, method="wilson")
    assert (b.lower, b.upper) == pytest.approx((ref.low, ref.high), abs=1e-9)


@given(n=st.integers(1, 5000), data=st.data(), method=st.sampled_from(["clopper_pearson", "wilson"]))
def test_bound_and_p_value_are_dual(n: int, data: st.DataObject, method: binomial.Method) -> None:
    """The engine decides on p-values and shows bounds: they must agree (away from exact ties)."""
    k = data.draw(st.integers(0, n))
    tau = data.draw(st.floats(0.001, 0.999))
    b = binomial.rate_bounds(k, n, tau, ALPHA, method)
    if abs(b.p_greater - ALPHA) > 1e-9 and abs(b.lower - tau) > 1e-9:
        assert (b.p_greater <= ALPHA) == (b.lower >= tau)
    if abs(b.p_less - ALPHA) > 1e-9 and abs(b.upper - tau) > 1e-9:
        assert (b.p_less <= ALPHA) == (b.upper <= tau)


@given(n=st.integers(1, 5000), data=st.data(), method=st.sampled_from(["clopper_pearson", "wilson"]))
def test_monotone_in_threshold(n: int, data: st.DataObject, method: binomial.Method) -> None:
    """Raising the bar never makes passing easier, nor failing harder."""
    k = data.draw(st.integers(0, n))
    t1, t2 = sorted(data.draw(st.lists(st.floats(0.001, 0.999), min_size=2, max_size=2)))
    low, high = binomial.rate_bounds(k, n, t1, ALPHA, method), binomial.rate_bounds(k, n, t2, ALPHA, method)
    assert low.p_greater <= high.p_greater + 1e-12
    assert low.p_less >= high.p_less - 1e-12
    assert (low.lower, low.upper) == (high.lower, high.upper)  # bounds do not depend on tau


@given(n=st.integers(1, 5000), data=st.data(), method=st.sampled_from(["clopper_pearson", "wilson"]))
def test_error_rate_is_the_mirror_of_success_rate(n: int, data: st.DataObject, method: binomial.Method) -> None:
    """k successes vs threshold tau (>=) is n-k failures vs 1-tau (<=): same p-values, mirrored bounds."""
    k = data.draw(st.integers(0, n))
    tau = data.draw(st.floats(0.001, 0.999))
    succ = binomial.rate_bounds(k, n, tau, ALPHA, method)
    fail = binomial.rate_bounds(n - k, n, 1 - tau, ALPHA, method)
    assert succ.p_greater == pytest.approx(fail.p_less, rel=1e-7, abs=1e-12)
    assert succ.p_less == pytest.approx(fail.p_greater, rel=1e-7, abs=1e-12)
    assert succ.lower == pytest.approx(1 - fail.upper, abs=1e-9)
    assert succ.upper == pytest.approx(1 - fail.lower, abs=1e-9)


def _brute_force_plan(tau: float, rate: float, alpha: float, power: float, limit: int) -> int:
    ns = np.arange(1, limit + 1)
    crit = stats.binom.isf(alpha, ns, tau)  # smallest x with P(K > x) <= alpha
    pw = stats.binom.sf(crit, ns, rate)
    return int(ns[np.argmax(pw >= power)])


@pytest.mark.parametrize(
    ("tau", "rate"), [(0.99, 0.995), (0.95, 0.96), (0.9, 0.92), (0.5, 0.55), (0.05, 0.1), (0.3, 0.9)]
)
def test_exact_plan_is_the_first_n_reaching_the_power(tau: float, rate: float) -> None:
    n, how = binomial.exact_plan(tau, rate, ALPHA, 0.8)
    assert how == "exact"
    assert n == _brute_force_plan(tau, rate, ALPHA, 0.8, 4 * n + 100)
    grid = np.array([n - 1, n], dtype=np.int64)
    below, at = binomial.exact_power(grid, tau, rate, ALPHA)
    assert at >= 0.8 > below


def test_exact_plan_large_case_matches_brute_force() -> None:
    # tau 0.994 vs 0.995: the saw-tooth makes the first crossing differ from a grid/bisection answer.
    n, _ = binomial.exact_plan(0.994, 0.995, ALPHA, 0.8)
    assert n == _brute_force_plan(0.994, 0.995, ALPHA, 0.8, 40_000) == 34_113


@pytest.mark.parametrize(("rate", "expected"), [(0.01, 299), (0.001, 2995)])
def test_zero_failure_demonstration(rate: float, expected: int) -> None:
    """Observing no failures, showing failure rate <= r needs n >= ln(alpha) / ln(1 - r)."""
    n, toward, _ = binomial.plan(0.0, rate, "<=", ALPHA, 0.8, "clopper_pearson")
    assert (n, toward) == (expected, "pass")


def test_plan_points_toward_the_side_of_the_estimate() -> None:
    assert binomial.plan(0.97, 0.95, ">=", ALPHA, 0.8, "clopper_pearson")[1] == "pass"
    assert binomial.plan(0.93, 0.95, ">=", ALPHA, 0.8, "clopper_pearson")[1] == "fail"
    assert binomial.plan(0.93, 0.95, "<=", ALPHA, 0.8, "clopper_pearson")[1] == "pass"
    assert binomial.plan(0.95, 0.95, ">=", ALPHA, 0.8, "clopper_pearson") == (None, None, None)
    # Mirror: failing a >= 0.95 gate at 0.93 is passing a <= 0.05 error-rate gate at 0.07... the other way.
    fail_side = binomial.plan(0.93, 0.95, ">=", ALPHA, 0.8, "clopper_pearson")[0]
    assert fail_side == binomial.plan(0.07, 0.05, "<=", ALPHA, 0.8, "clopper_pearson")[0]


def test_normal_plan_reference_values() -> None:
    assert binomial.normal_plan(0.99, 0.995, ALPHA, 0.8) == pytest.approx(1990, abs=1)
    assert binomial.normal_plan(0.994, 0.995, ALPHA, 0.8) == pytest.approx(34742, abs=1)
