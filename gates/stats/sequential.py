"""Sequential decisions that stay valid however often the gate is re-checked as labels arrive.

Both procedures are evaluated along the whole path of cumulative outcomes in arrival order and
stop at the *first* boundary crossing, so re-running the gate on a longer prefix never changes a
decision already reached: looking again cannot inflate the error rate.

* Wald's SPRT (1945) for H0 "p <= p0" against H1 "p >= p1". Boundaries ``wald``: PASS at
  ``LLR >= ln((1 - beta) / alpha)``, FAIL at ``LLR <= ln(beta / (1 - alpha))`` (Wald's
  approximations; the realised rates are at most ``alpha / (1 - beta)`` and ``beta / (1 - alpha)``
  and in practice below the nominal ones). Boundaries ``ville``: ``ln(1 / alpha)`` and ``ln(beta)``,
  which Ville's inequality turns into strict guarantees ``<= alpha`` and ``<= beta``.
* A beta-binomial mixture e-process (a confidence sequence) for H0 "p <= tau" and, mirrored, for
  H0 "p >= tau": PASS/FAIL the first time either e-value reaches ``1 / alpha`` (Ville).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

Boundaries = Literal["wald", "ville"]
SeqStatus = Literal["PASS", "FAIL", "CONTINUE"]


@dataclass(frozen=True)
class PathDecision:
    """Outcome of a sequential procedure run along a 0/1 path.

    ``n_used``/``k_used`` are the observations and successes up to the stopping time (the whole
    path when it never stopped); ``statistic`` is the LLR (SPRT) or log e-value (confidence
    sequence) at that point; ``p_greater``/``p_less`` are anytime-valid p-values
    (1 / running maximum of the e-process, capped at 1) for "p <= p0 (or tau)" and "p >= p1".
    """

    status: SeqStatus
    n_used: int
    k_used: int
    statistic: float
    upper_boundary: float
    lower_boundary: float
    p_greater: float
    p_less: float


def sprt_boundaries(alpha: float, beta: float, boundaries: Boundaries) -> tuple[float, float]:
    """``(ln A, ln B)``: the PASS and FAIL log-likelihood-ratio boundaries."""
    if boundaries == "ville":
        return math.log(1.0 / alpha), math.log(beta)
    return math.log((1.0 - beta) / alpha), math.log(beta / (1.0 - alpha))


def _first_stop(upper_hit: NDArray[np.bool_], lower_hit: NDArray[np.bool_]) -> tuple[SeqStatus, int]:
    """Index of the first crossing and which side, or ``("CONTINUE", last index)``."""
    up = int(np.argmax(upper_hit)) if upper_hit.any() else -1
    down = int(np.argmax(lower_hit)) if lower_hit.any() else -1
    if up < 0 and down < 0:
        return "CONTINUE", upper_hit.size - 1
    if down < 0 or (0 <= up < down):
        return "PASS", up
    return "FAIL", down


def sprt_path(
    outcomes: NDArray[np.bool_], p0: float, p1: float, alpha: float, beta: float, boundaries: Boundaries
) -> PathDecision:
    """Run the SPRT along ``outcomes`` (arrival order) and stop at the first crossing.

    The likelihood ratio is an e-process for every p <= p0 (monotone likelihood ratio), and its
    reciprocal for every p >= p1, which gives the anytime-valid p-values reported.
    """
    ln_a, ln_b = sprt_boundaries(alpha, beta, boundaries)
    if outcomes.size == 0:
        return PathDecision("CONTINUE", 0, 0, 0.0, ln_a, ln_b, 1.0, 1.0)
    step_ok = math.log(p1 / p0)
    step_bad = math.log((1.0 - p1) / (1.0 - p0))
    k = np.cumsum(outcomes, dtype=np.int64)
    n = np.arange(1, outcomes.size + 1, dtype=np.int64)
    llr = k * step_ok + (n - k) * step_bad
    status, stop = _first_stop(llr >= ln_a, llr <= ln_b)
    path = llr[: stop + 1]
    return PathDecision(
        status=status,
        n_used=stop + 1,
        k_used=int(k[stop]),
        statistic=float(llr[stop]),
        upper_boundary=ln_a,
        lower_boundary=ln_b,
        p_greater=min(1.0, math.exp(-max(0.0, float(path.max())))),
        p_less=min(1.0, math.exp(min(0.0, float(path.min())))),
    )


def log_evalue_greater(k: NDArray[np.float64], n: NDArray[np.float64], tau: float) -> NDArray[np.float64]:
    """log e-value against H0 "p <= tau": uniform prior truncated to [tau, 1] over the alternative."""
    with np.errstate(divide="ignore"):
        num = special.betaln(1.0 + k, 1.0 + n - k) + np.log(special.betaincc(1.0 + k, 1.0 + n - k, tau))
        den = math.log1p(-tau)  # log of the prior mass B(1,1) * (1 - I_tau(1, 1)) = 1 - tau
        return np.asarray(num - den - (k * math.log(tau) + (n - k) * math.log1p(-tau)), dtype=np.float64)


def log_evalue_less(k: NDArray[np.float64], n: NDArray[np.float64], tau: float) -> NDArray[np.float64]:
    """log e-value against H0 "p >= tau": the mirror image of :func:`log_evalue_greater`."""
    return log_evalue_greater(n - k, n, 1.0 - tau)


def _log_glr(k: NDArray[np.float64], n: NDArray[np.float64], tau: float, greater: bool) -> NDArray[np.float64]:
    """log of the one-sided generalised likelihood ratio, ``n * KL(k/n || tau)`` on the
    alternative's side of tau and 0 elsewhere: an upper bound on the mixture log e-value (a
    mixture never exceeds its best component), and cheap to compute."""
    out = np.zeros(k.shape, dtype=np.float64)
    side = np.flatnonzero(k > n * tau if greater else k < n * tau)
    ks, ns = k[side], n[side]
    out[side] = special.xlogy(ks, ks / (ns * tau)) + special.xlogy(ns - ks, (ns - ks) / (ns * (1.0 - tau)))
    return out


_CHUNK = 4096
_P_VALUE_POINTS = 64


def _first_crossing(
    k: NDArray[np.float64], n: NDArray[np.float64], tau: float, bound: float, greater: bool
) -> tuple[int, float]:
    """First index where the mixture e-process for one side reaches ``exp(bound)`` (-1 if never)
    and its maximum log value over the points evaluated up to there.

    Only points whose likelihood-ratio bound reaches ``bound`` can cross, so the exact (costly)
    e-value is computed there, in order and in chunks, stopping at the first crossing; a thin
    grid of other points is added for the reported p-value (any set of times gives a valid one).
    """
    log_e = log_evalue_greater if greater else log_evalue_less
    candidates = np.flatnonzero(_log_glr(k, n, tau, greater) >= bound - 1e-9)
    best = -math.inf
    hit = -1
    for start in range(0, candidates.size, _CHUNK):
        idx = candidates[start : start + _CHUNK]
        values = log_e(k[idx], n[idx], tau)
        above = np.flatnonzero(values >= bound)
        if above.size:
            hit = int(idx[above[0]])
            best = max(best, float(values[: above[0] + 1].max()))
            break
        best = max(best, float(values.max()))
    last = hit if hit >= 0 else k.size - 1
    # Log-spaced: e-values grow roughly with log n, so late points matter most for the maximum.
    grid = np.unique(np.geomspace(1, last + 1, _P_VALUE_POINTS).astype(np.int64) - 1)
    best = max(best, float(log_e(k[grid], n[grid], tau).max()))
    return hit, best


def cs_path(outcomes: NDArray[np.bool_], tau: float, alpha: float) -> PathDecision:
    """Run both mixture e-processes along ``outcomes``; PASS/FAIL when one first reaches 1/alpha."""
    bound = math.log(1.0 / alpha)
    if outcomes.size == 0:
        return PathDecision("CONTINUE", 0, 0, 0.0, bound, -bound, 1.0, 1.0)
    k = np.cumsum(outcomes, dtype=np.int64).astype(np.float64)
    n = np.arange(1, outcomes.size + 1, dtype=np.float64)
    up, up_best = _first_crossing(k, n, tau, bound, greater=True)
    scope = up + 1 if up >= 0 else k.size
    down, down_best = _first_crossing(k[:scope], n[:scope], tau, bound, greater=False)
    if down >= 0:
        status: SeqStatus = "FAIL"
        stop = down
    elif up >= 0:
        status, stop = "PASS", up
    else:
        status, stop = "CONTINUE", k.size - 1
    kk, nn = k[stop : stop + 1], n[stop : stop + 1]
    statistic = (
        -float(log_evalue_less(kk, nn, tau)[0]) if status == "FAIL" else float(log_evalue_greater(kk, nn, tau)[0])
    )
    return PathDecision(
        status=status,
        n_used=stop + 1,
        k_used=int(k[stop]),
        statistic=statistic,
        upper_boundary=bound,
        lower_boundary=-bound,
        p_greater=min(1.0, math.exp(-max(0.0, up_best))),
        p_less=min(1.0, math.exp(-max(0.0, down_best))),
    )


def _cs_lower(k: int, n: int, alpha: float) -> float:
    """Smallest tau the e-process for "p <= tau" has not rejected (0 when it rejects none)."""
    if k == 0:
        return 0.0
    bound = math.log(1.0 / alpha)
    ks, ns = np.array([float(k)]), np.array([float(n)])

    def excess(tau: float) -> float:
        return float(log_evalue_greater(ks, ns, tau)[0]) - bound

    hi = k / n - 1e-12
    if excess(hi) > 0.0:
        return hi
    if excess(1e-12) <= 0.0:
        return 0.0
    return float(optimize.brentq(excess, 1e-12, hi))


def cs_bounds(k: int, n: int, alpha: float) -> tuple[float, float]:
    """Anytime-valid ``1 - alpha`` lower and upper confidence-sequence bounds at (k, n).

    Each side is one-sided at ``1 - alpha`` (the e-process for "p <= tau" gives the lower bound,
    its mirror the upper); ``(0, 1)`` when n == 0.
    """
    if n == 0:
        return 0.0, 1.0
    return _cs_lower(k, n, alpha), 1.0 - _cs_lower(n - k, n, alpha)


def asn_remaining(statistic: float, upper: float, lower: float, drift: float) -> float | None:
    """Expected further observations to reach the boundary the drift points to (Wald's
    approximation, ignoring overshoot); ``None`` when the drift is zero."""
    if drift > 0:
        return max(0.0, (upper - statistic) / drift)
    if drift < 0:
        return max(0.0, (statistic - lower) / -drift)
    return None
