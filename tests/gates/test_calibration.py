"""Calibration by simulation: with the truth exactly at (or just beyond) the requirement, gates
PASS at most alpha of the time (within binomial noise), under repeated looks for sequential
gates; clearly good models pass with the planned power; Holm keeps wrong FAILs across slices
at alpha.

Simulations are vectorised: draws are binomial/multinomial counts, and the engine's own
statistics functions are called once per *distinct* count, which is exactly what the engine
would compute for each simulated table. A smaller end-to-end run through ``gates.evaluate``
checks that the engine wires those functions the right way round.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy import special, stats

import gates
from gates.stats import binomial, multiplicity, paired, sequential

ALPHA = 0.05


def slack(sims: int, rate: float = ALPHA) -> float:
    """Three binomial standard errors of an empirical rate over ``sims`` simulations."""
    return 3.0 * math.sqrt(rate * (1 - rate) / sims)


def _decide_each(keys: np.ndarray[Any, Any], decide: Any) -> np.ndarray[Any, Any]:
    """Apply ``decide`` once per distinct row of ``keys`` and broadcast the answers back."""
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    answers = np.array([decide(*map(int, row)) for row in np.atleast_2d(uniq)])
    return answers[inverse.reshape(-1)]


@pytest.mark.parametrize("n", [200, 1000, 5000])
@pytest.mark.parametrize("tau", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("offset", [0.0, 0.002])
def test_proportion_false_pass_rate(n: int, tau: float, offset: float) -> None:
    truth = tau - offset  # at, or just beyond, the requirement
    sims = 20_000
    ks = np.random.default_rng(int(1e6 * tau) + n).binomial(n, truth, size=sims)
    passed = _decide_each(ks[:, None], lambda k: binomial.clopper_pearson(k, n, tau, ALPHA).p_greater <= ALPHA)
    assert passed.mean() <= ALPHA + slack(sims)
    # The exact size (sum over all outcomes) never exceeds alpha: Clopper-Pearson's guarantee.
    k = np.arange(n + 1)
    pmf = stats.binom.pmf(k, n, truth)
    exact = sum(pmf[j] for j in k if binomial.clopper_pearson(int(j), n, tau, ALPHA).p_greater <= ALPHA)
    assert exact <= ALPHA + 1e-12


@pytest.mark.parametrize(("n", "budget"), [(300, 0.02), (2000, 0.01), (500, 0.1)])
def test_failure_budget_false_pass_rate(n: int, budget: float) -> None:
    sims = 20_000
    fs = np.random.default_rng(n).binomial(n, budget, size=sims)
    passed = _decide_each(fs[:, None], lambda f: binomial.clopper_pearson(f, n, budget, ALPHA).p_less <= ALPHA)
    assert passed.mean() <= ALPHA + slack(sims)


@pytest.mark.parametrize(
    ("n", "psi", "margin"), [(1000, 0.04, 0.01), (500, 0.02, 0.01), (2000, 0.1, 0.005), (300, 0.06, 0.02)]
)
def test_paired_noninferiority_false_pass_rate(n: int, psi: float, margin: float) -> None:
    """Candidate exactly ``margin`` worse than the baseline; ``psi`` of pairs discordant."""
    sims = 20_000
    q_b, q_c = (psi + margin) / 2, (psi - margin) / 2
    draws = np.random.default_rng(n).multinomial(n, [q_b, q_c, 1 - q_b - q_c], size=sims)[:, :2]
    passed = _decide_each(
        draws, lambda b, c: paired.difference_bounds(b, c, n, margin, ALPHA, "tango").p_greater <= ALPHA
    )
    assert passed.mean() <= ALPHA + slack(sims)


def test_sprt_false_pass_rate_with_repeated_looks() -> None:
    """Streams at p = p0: the gate re-checked after every label (the whole path) passes <= alpha.
    The same streams re-checked with a fixed-n Clopper-Pearson bound every 100 labels would not."""
    p0, p1, beta, sims, length = 0.94, 0.96, 0.1, 3000, 6000
    rng = np.random.default_rng(11)
    streams = rng.random((sims, length)) < p0
    decided = [sequential.sprt_path(s, p0, p1, ALPHA, beta, "wald").status for s in streams]
    assert np.mean([d == "PASS" for d in decided]) <= ALPHA + slack(sims)
    assert np.mean([d == "CONTINUE" for d in decided]) < 0.01  # the horizon is long enough to decide
    looks = np.arange(100, length + 1, 100)
    k = np.cumsum(streams, axis=1)[:, looks - 1]
    naive = special.bdtrc(k - 1, looks, p0) <= ALPHA  # fixed-n CP "lower bound >= p0" at each look
    assert naive.any(axis=1).mean() > 3 * ALPHA
    good = rng.random((1000, length)) < p1
    power = np.mean([sequential.sprt_path(s, p0, p1, ALPHA, beta, "wald").status == "PASS" for s in good])
    assert power >= 1 - beta - slack(1000, beta)


def test_confidence_sequence_false_pass_rate_under_continuous_monitoring() -> None:
    tau, sims, length = 0.9, 1500, 3000
    streams = np.random.default_rng(12).random((sims, length)) < tau
    passed = np.mean([sequential.cs_path(s, tau, ALPHA).status == "PASS" for s in streams])
    assert passed <= ALPHA + slack(sims)


def test_holm_keeps_wrong_fails_across_slices_at_alpha() -> None:
    """Ten good slices at tau + 0.002: uncorrected, some slice is wrongly FAILed far above alpha."""
    tau, n, slices, sims = 0.95, 2000, 10, 4000
    ks = np.random.default_rng(13).binomial(n, tau + 0.002, size=(sims, slices))
    p_fail = _decide_each(ks.reshape(-1, 1), lambda k: binomial.clopper_pearson(k, n, tau, ALPHA).p_less).reshape(
        sims, slices
    )
    raw = (p_fail <= ALPHA).any(axis=1).mean()
    holm = np.mean([(multiplicity.adjust(row, "holm") <= ALPHA).any() for row in p_fail])
    assert holm <= ALPHA + slack(sims)
    assert raw > 2 * ALPHA


@pytest.mark.parametrize(("tau", "truth"), [(0.95, 0.96), (0.99, 0.995), (0.9, 0.93)])
def test_good_models_pass_with_the_planned_power(tau: float, truth: float) -> None:
    n, _ = binomial.exact_plan(tau, truth, ALPHA, 0.8)
    sims = 10_000
    ks = np.random.default_rng(14).binomial(n, truth, size=sims)
    passed = _decide_each(ks[:, None], lambda k: binomial.clopper_pearson(k, n, tau, ALPHA).p_greater <= ALPHA)
    assert passed.mean() >= 0.8 - slack(sims, 0.8)


def test_paired_good_candidate_passes_with_the_planned_power() -> None:
    n, _ = paired.paired_plan(20, 20, 1000, 0.01, ALPHA, 0.8, "tango")  # psi 0.04, no true difference
    sims = 10_000
    draws = np.random.default_rng(15).multinomial(n, [0.02, 0.02, 0.96], size=sims)[:, :2]
    passed = _decide_each(
        draws, lambda b, c: paired.difference_bounds(b, c, n, 0.01, ALPHA, "tango").p_greater <= ALPHA
    )
    assert passed.mean() >= 0.8 - slack(sims, 0.8)


def test_engine_end_to_end_calibration() -> None:
    """Whole tables through gates.evaluate: at the requirement the engine passes rarely; with a
    clear margin it passes almost always (a direction mix-up would flip both)."""
    sims, n = 200, 1000
    rng = np.random.default_rng(16)
    spec = gates.load_spec(
        {
            "version": 1,
            "gates": [
                {"id": "acc", "kind": "proportion", "outcome": "hit", "threshold": 0.9},
                {"id": "err", "kind": "failure_budget", "max_failure_rate": 0.1},
                {"id": "ni", "kind": "paired_noninferiority", "margin": 0.02},
            ],
        }
    )

    def pass_rates(rate: float, q_b: float, q_c: float) -> dict[str, float]:
        wins = dict.fromkeys(("acc", "err", "ni"), 0)
        for _ in range(sims):
            u = rng.random(n)
            base_ok = np.where(u < q_b, True, np.where(u < q_b + q_c, False, rng.random(n) < 0.9))
            cand_ok = np.where(u < q_b + q_c, ~base_ok, base_ok)  # discordant pairs flip
            ids = np.arange(n)
            cand = pa.table(
                {"id": ids, "correct": cand_ok, "hit": rng.random(n) < rate, "passed": rng.random(n) < rate}
            )
            base = pa.table({"id": ids, "correct": base_ok})
            for g in gates.evaluate(spec, cand, base).gates:
                wins[g.gate_id] += g.status == "PASS"
        return {k: v / sims for k, v in wins.items()}

    at_bar = pass_rates(0.9, 0.035, 0.015)  # rates exactly at the bar; candidate exactly 2 points worse
    assert max(at_bar.values()) <= ALPHA + slack(sims)
    clear = pass_rates(0.95, 0.01, 0.01)
    assert min(clear.values()) >= 0.95
