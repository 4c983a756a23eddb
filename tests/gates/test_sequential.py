"""SPRT and the mixture confidence sequence: verified constants, stopping-rule invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gates.stats import sequential

ALPHA = 0.05


def test_wald_boundaries_and_increments_match_verified_values() -> None:
    ln_a, ln_b = sequential.sprt_boundaries(0.05, 0.05, "wald")
    assert ln_a == pytest.approx(2.944, abs=5e-4)
    assert ln_b == pytest.approx(-2.944, abs=5e-4)
    one_success = sequential.sprt_path(np.array([True]), 0.99, 0.995, 0.05, 0.05, "wald").statistic
    one_failure = sequential.sprt_path(np.array([False]), 0.99, 0.995, 0.05, 0.05, "wald").statistic
    assert one_success == pytest.approx(0.005038, abs=5e-7)
    assert one_failure == pytest.approx(-0.693147, abs=5e-7)
    assert sequential.sprt_boundaries(0.05, 0.1, "ville") == pytest.approx((math.log(20), math.log(0.1)))


def test_confidence_sequence_verified_values() -> None:
    lower, upper = sequential.cs_bounds(9950, 10000, ALPHA)
    assert lower == pytest.approx(0.99260, abs=5e-6)
    assert 0.995 < upper < 1.0
    e_value = math.exp(sequential.log_evalue_greater(np.array([9950.0]), np.array([10000.0]), 0.99)[0])
    assert e_value == pytest.approx(9.25e5, rel=0.01)


def test_sprt_stops_at_the_first_crossing() -> None:
    # p0 = 0.5, p1 = 0.9: each success adds ln(1.8), each failure ln(0.2).
    ln_a, _ = sequential.sprt_boundaries(0.05, 0.1, "wald")
    needed = math.ceil(ln_a / math.log(1.8))
    path = sequential.sprt_path(np.ones(needed + 50, dtype=bool), 0.5, 0.9, 0.05, 0.1, "wald")
    assert (path.status, path.n_used, path.k_used) == ("PASS", needed, needed)
    down = sequential.sprt_path(np.zeros(10, dtype=bool), 0.5, 0.9, 0.05, 0.1, "wald")
    assert down.status == "FAIL" and down.n_used == 2  # ln(0.2) * 2 < ln(0.1 / 0.95)


@given(seed=st.integers(0, 2**31), p=st.floats(0.85, 0.99), cut=st.integers(1, 3000))
def test_sprt_decision_is_stable_under_longer_prefixes(seed: int, p: float, cut: int) -> None:
    """Re-checking on more data never changes a decision already reached: what removes peeking."""
    stream = np.random.default_rng(seed).random(3000) < p
    full = sequential.sprt_path(stream, 0.9, 0.95, ALPHA, 0.1, "wald")
    prefix = sequential.sprt_path(stream[:cut], 0.9, 0.95, ALPHA, 0.1, "wald")
    if prefix.status != "CONTINUE":
        assert (prefix.status, prefix.n_used) == (full.status, full.n_used)
    else:
        assert full.n_used > cut or full.status == "CONTINUE"


@given(seed=st.integers(0, 2**31), cut=st.integers(1, 1500))
def test_confidence_sequence_decision_is_stable_under_longer_prefixes(seed: int, cut: int) -> None:
    stream = np.random.default_rng(seed).random(1500) < 0.97
    full = sequential.cs_path(stream, 0.95, ALPHA)
    prefix = sequential.cs_path(stream[:cut], 0.95, ALPHA)
    if prefix.status != "CONTINUE":
        assert (prefix.status, prefix.n_used) == (full.status, full.n_used)


@given(k=st.integers(0, 2000), data=st.data())
def test_confidence_sequence_is_wider_than_clopper_pearson(k: int, data: st.DataObject) -> None:
    """Optional stopping has a price: the anytime bound is never tighter than the fixed-n one."""
    from gates.stats.binomial import clopper_pearson

    n = data.draw(st.integers(max(k, 1), 2000))
    lower, upper = sequential.cs_bounds(k, n, ALPHA)
    cp = clopper_pearson(k, n, 0.5, ALPHA)
    assert lower <= cp.lower + 1e-9
    assert upper >= cp.upper - 1e-9


def test_anytime_p_values_bound_the_decision() -> None:
    """Under Ville boundaries a PASS always carries an anytime-valid p-value <= alpha."""
    stream = np.random.default_rng(3).random(5000) < 0.97
    path = sequential.sprt_path(stream, 0.9, 0.95, ALPHA, 0.1, "ville")
    assert path.status == "PASS" and path.p_greater <= ALPHA
    cs = sequential.cs_path(stream, 0.9, ALPHA)
    assert cs.status == "PASS" and cs.p_greater <= ALPHA


def test_asn_remaining() -> None:
    assert sequential.asn_remaining(1.0, 3.0, -2.0, 0.5) == pytest.approx(4.0)
    assert sequential.asn_remaining(1.0, 3.0, -2.0, -0.5) == pytest.approx(6.0)
    assert sequential.asn_remaining(1.0, 3.0, -2.0, 0.0) is None
