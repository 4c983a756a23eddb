"""Paired non-inferiority (Agresti-Min, Tango) and exact McNemar against verified vectors and
scipy reference computations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import optimize, stats

from gates.stats import paired

ALPHA = 0.05


def test_mcnemar_exact_verified_vector() -> None:
    assert paired.mcnemar_exact(30, 12) == pytest.approx(0.007916, abs=5e-7)
    assert paired.mcnemar_exact(0, 0) == 1.0


@given(b=st.integers(0, 400), c=st.integers(0, 400))
def test_mcnemar_equals_two_sided_binomial_test(b: int, c: int) -> None:
    ref = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5).pvalue
    assert paired.mcnemar_exact(b, c) == pytest.approx(ref, rel=1e-9)


def test_agresti_min_verified_vectors() -> None:
    d = paired.agresti_min(30, 12, 1000, 0.03, ALPHA)
    assert d.estimate == pytest.approx(-0.018)
    assert d.lower == pytest.approx(-0.02869, abs=5e-6)
    assert d.upper == pytest.approx(-0.00724, abs=5e-6)
    assert d.p_greater == pytest.approx(0.032, abs=5e-4)


@pytest.mark.parametrize(
    ("margin", "decision"), [(0.005, "FAIL"), (0.01, "INCONCLUSIVE"), (0.02, "INCONCLUSIVE"), (0.03, "PASS")]
)
@pytest.mark.parametrize("method", ["agresti_min", "tango"])
def test_verified_decisions_b30_c12(margin: float, decision: str, method: paired.PairedMethod) -> None:
    d = paired.difference_bounds(30, 12, 1000, margin, ALPHA, method)
    got = "PASS" if d.p_greater <= ALPHA else "FAIL" if d.p_less <= ALPHA else "INCONCLUSIVE"
    assert got == decision
    assert (d.lower > -margin) == (got == "PASS")
    assert (d.upper < -margin) == (got == "FAIL")


def _tango_reference(b: int, c: int, n: int, delta0: float) -> float:
    """Score statistic with the restricted MLE found numerically (scipy), not by the closed form."""
    rest = n - b - c
    lo, hi = max(0.0, -delta0) + 1e-12, (1 - delta0) / 2 - 1e-12

    def nll(q: float) -> float:
        qc = q + delta0
        return -(b * math.log(q) + c * math.log(qc) + rest * math.log(max(1e-300, 1 - q - qc)))

    q = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13}).x
    return (c - b - n * delta0) / math.sqrt(n * (2 * q + delta0 - delta0 * delta0))


@given(n=st.integers(50, 3000), data=st.data())
def test_tango_score_matches_numeric_restricted_mle(n: int, data: st.DataObject) -> None:
    b = data.draw(st.integers(1, n // 4))
    c = data.draw(st.integers(1, n // 4))
    delta0 = -data.draw(st.floats(0.001, 0.1))
    assert paired.tango_score(b, c, n, delta0) == pytest.approx(_tango_reference(b, c, n, delta0), rel=1e-4)


@given(n=st.integers(20, 3000), data=st.data())
def test_tango_interval_inverts_its_test(n: int, data: st.DataObject) -> None:
    b = data.draw(st.integers(0, n // 3))
    c = data.draw(st.integers(0, n // 3))
    d = paired.tango(b, c, n, 0.01, ALPHA)
    z = stats.norm.ppf(1 - ALPHA)
    assert d.lower <= d.estimate <= d.upper
    if d.lower > -1.0:
        assert paired.tango_score(b, c, n, d.lower) == pytest.approx(z, abs=1e-6)
    if d.upper < 1.0:
        assert paired.tango_score(b, c, n, d.upper) == pytest.approx(-z, abs=1e-6)


@given(n=st.integers(20, 3000), data=st.data(), method=st.sampled_from(["agresti_min", "tango"]))
def test_monotone_in_margin_and_mirror_symmetric(n: int, data: st.DataObject, method: paired.PairedMethod) -> None:
    b = data.draw(st.integers(0, n // 3))
    c = data.draw(st.integers(0, n // 3))
    m1, m2 = sorted(data.draw(st.lists(st.floats(0.0, 0.2), min_size=2, max_size=2)))
    loose, strict = (
        paired.difference_bounds(b, c, n, m2, ALPHA, method),
        paired.difference_bounds(b, c, n, m1, ALPHA, method),
    )
    assert loose.p_greater <= strict.p_greater + 1e-12  # a wider margin is never harder to pass
    swapped = paired.difference_bounds(c, b, n, 0.0, ALPHA, method)
    here = paired.difference_bounds(b, c, n, 0.0, ALPHA, method)
    assert here.lower == pytest.approx(-swapped.upper, abs=1e-7)
    assert here.p_greater == pytest.approx(swapped.p_less, abs=1e-9)


def test_paired_plan_reference_value() -> None:
    # psi = 0.04, delta = 0, margin 0.01 -> 2,474 (Connor 1987 normal approximation).
    assert paired.paired_plan(20, 20, 1000, 0.01, ALPHA, 0.8) == (2474, "pass")
    assert paired.paired_plan(30, 12, 1000, 0.005, ALPHA, 0.8)[1] == "fail"
    assert paired.paired_plan(15, 5, 1000, 0.01, ALPHA, 0.8) == (None, None)
