"""Exact (Clopper-Pearson) and Wilson score bounds for a binomial rate, their dual p-values, and
exact sample-size plans.

Conventions: ``k`` successes of ``n`` trials; all bounds are *one-sided* at level ``1 - alpha``
each (the lower bound is the one a ">=" gate passes on, the upper bound the one it fails on), so
the pair reads as a ``1 - 2*alpha`` two-sided interval. p-values are computed from the same test
the bound inverts, hence ``lower >= tau  <=>  p_greater(tau) <= alpha`` exactly for Clopper-Pearson
and for Wilson; the engine decides on p-values and displays the bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import special

Method = Literal["clopper_pearson", "wilson"]

# Beyond this many examples a plan is reported from the normal approximation: the exact scan
# would cost seconds there, and the discreteness it captures is far below 0.1 % at that size.
_EXACT_PLAN_LIMIT = 10_000_000


@dataclass(frozen=True)
class RateBounds:
    """One-sided ``1 - alpha`` bounds and the two one-sided p-values at a threshold ``tau``.

    ``p_greater`` tests H0 "rate <= tau" (small when the data show the rate is above ``tau``);
    ``p_less`` tests H0 "rate >= tau".
    """

    estimate: float
    lower: float
    upper: float
    p_greater: float
    p_less: float


def tail_ge(k: int, n: int, p: float) -> float:
    """P(K >= k) for K ~ Binomial(n, p); 1 for k <= 0, 0 for k > n."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(special.bdtrc(k - 1, n, p))


def tail_le(k: int, n: int, p: float) -> float:
    """P(K <= k) for K ~ Binomial(n, p); 0 for k < 0, 1 for k >= n."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return float(special.bdtr(k, n, p))


def clopper_pearson(k: int, n: int, tau: float, alpha: float) -> RateBounds:
    """Exact one-sided Clopper-Pearson bounds and exact binomial-test p-values at ``tau``.

    Requires ``n >= 1``, ``0 <= k <= n``, ``0 < tau < 1``, ``0 < alpha < 1``.
    """
    lower = 0.0 if k == 0 else float(special.betaincinv(k, n - k + 1, alpha))
    upper = 1.0 if k == n else float(special.betaincinv(k + 1, n - k, 1.0 - alpha))
    return RateBounds(
        estimate=k / n,
        lower=lower,
        upper=upper,
        p_greater=tail_ge(k, n, tau),
        p_less=tail_le(k, n, tau),
    )


def wilson(k: int, n: int, tau: float, alpha: float) -> RateBounds:
    """One-sided Wilson score bounds and the matching score-test p-values at ``tau``.

    Near-nominal on average but, unlike Clopper-Pearson, without a coverage guarantee.
    """
    z = float(special.ndtri(1.0 - alpha))
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    score = (k - n * tau) / math.sqrt(n * tau * (1 - tau))
    return RateBounds(
        estimate=phat,
        lower=max(0.0, centre - half),
        upper=min(1.0, centre + half),
        p_greater=float(special.ndtr(-score)),
        p_less=float(special.ndtr(score)),
    )


def rate_bounds(k: int, n: int, tau: float, alpha: float, method: Method) -> RateBounds:
    """Dispatch to :func:`clopper_pearson` or :func:`wilson`."""
    if method == "wilson":
        return wilson(k, n, tau, alpha)
    return clopper_pearson(k, n, tau, alpha)


def normal_plan(tau: float, rate: float, alpha: float, power: float) -> int:
    """Normal-approximation n for a one-sided level-``alpha`` test of "rate <= tau" to reject with
    probability ``power`` when the true rate is ``rate`` (> tau)."""
    za = float(special.ndtri(1.0 - alpha))
    zb = float(special.ndtri(power))
    root = za * math.sqrt(tau * (1 - tau)) + zb * math.sqrt(rate * (1 - rate))
    return max(1, math.ceil((root / (rate - tau)) ** 2))


def _critical_k(ns: NDArray[np.int64], tau: float, alpha: float) -> NDArray[np.int64]:
    """Smallest k with P_tau(K >= k) <= alpha for each n (n + 1 when no k qualifies).

    Starts from the Cornish-Fisher guess (normal quantile plus skewness and continuity terms),
    which is exact or one off, and walks the unsettled entries one step at a time, so every
    evaluation is a vectorised ``bdtrc`` call on the entries still moving.
    """
    z = float(special.ndtri(1.0 - alpha))
    sd = np.sqrt(ns * tau * (1 - tau))
    guess = np.ceil(ns * tau + z * sd + (z * z - 1) * (1 - 2 * tau) / 6 + 0.5)
    k = np.clip(guess, 1, ns + 1).astype(np.int64)

    def tail(kk: NDArray[np.int64], nn: NDArray[np.int64]) -> NDArray[np.float64]:
        out = np.zeros(kk.shape, dtype=np.float64)
        inside = kk <= nn
        out[inside] = special.bdtrc(kk[inside] - 1, nn[inside], tau)
        return out

    active = np.arange(k.size)
    while active.size:
        ka, na = k[active], ns[active]
        down = (ka > 1) & (tail(ka - 1, na) <= alpha)
        up = ~down & (ka <= na) & (tail(ka, na) > alpha)
        k[active] = ka - down.astype(np.int64) + up.astype(np.int64)
        active = active[down | up]
    return np.asarray(k, dtype=np.int64)


def _critical_k_scalar(n: int, tau: float, alpha: float) -> int:
    """:func:`_critical_k` for one n without array overhead (the bisection calls it often)."""
    z = float(special.ndtri(1.0 - alpha))
    guess = math.ceil(n * tau + z * math.sqrt(n * tau * (1 - tau)) + (z * z - 1) * (1 - 2 * tau) / 6 + 0.5)
    k = min(max(guess, 1), n + 1)
    while k > 1 and tail_ge(k - 1, n, tau) <= alpha:
        k -= 1
    while k <= n and tail_ge(k, n, tau) > alpha:
        k += 1
    return k


def exact_power(ns: NDArray[np.int64], tau: float, rate: float, alpha: float) -> NDArray[np.float64]:
    """Power of the exact one-sided binomial test of "rate <= tau" at each n, true rate ``rate``."""
    k = _critical_k(ns, tau, alpha)
    out = np.zeros(ns.shape, dtype=np.float64)
    ok = k <= ns
    if rate >= 1.0:
        out[ok] = 1.0
    else:
        out[ok] = special.bdtrc(k[ok] - 1, ns[ok], rate)
    return out


def randomized_power(n: int, tau: float, rate: float, alpha: float) -> float:
    """Power of the randomised (uniformly most powerful) level-``alpha`` test of "rate <= tau".

    It bounds the power of the exact non-randomised test from above at every n and, unlike that
    saw-tooth, increases with n; :func:`exact_plan` uses it to know where to start scanning.
    """
    k = _critical_k_scalar(n, tau, alpha)
    size = tail_ge(k, n, tau)
    # Reject outright for K >= k, and with probability gamma at K == k - 1 to use up alpha.
    edge_tau = tail_ge(k - 1, n, tau) - size
    gamma = 0.0 if edge_tau <= 0.0 else min(1.0, (alpha - size) / edge_tau)
    if rate >= 1.0:
        return float(k <= n) + gamma * float(k - 1 == n)
    return tail_ge(k, n, rate) + gamma * (tail_ge(k - 1, n, rate) - tail_ge(k, n, rate))


def exact_plan(tau: float, rate: float, alpha: float, power: float) -> tuple[int, str]:
    """Smallest n at which the exact test of "rate <= tau" reaches ``power`` at true ``rate``.

    Returns ``(n, method)``. The exact power is a saw-tooth in n, so the first crossing is found by
    scanning: it cannot come before the n at which the (monotone, more powerful) randomised test
    crosses, which a bisection finds, so the scan starts there. Plans beyond 10^8 come from the
    normal approximation (``method == "normal"``). Requires ``0 < tau < rate <= 1``.
    """
    n0 = normal_plan(tau, rate, alpha, power) if rate < 1.0 else _zero_failure_guess(tau, alpha)
    if n0 > _EXACT_PLAN_LIMIT:
        return n0, "normal"
    lo, hi = 1, max(2, n0)
    while randomized_power(hi, tau, rate, alpha) < power:
        lo, hi = hi, 2 * hi
    while lo < hi:
        mid = (lo + hi) // 2
        if randomized_power(mid, tau, rate, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    start = lo
    # The exact test's first crossing trails the randomised one by well under sqrt(n) examples.
    chunk = max(64, 2 * math.isqrt(start))
    while True:
        ns = np.arange(start, start + chunk, dtype=np.int64)
        hit = np.flatnonzero(exact_power(ns, tau, rate, alpha) >= power)
        if hit.size:
            return int(ns[hit[0]]), "exact"
        start += chunk


def _zero_failure_guess(tau: float, alpha: float) -> int:
    """n with tau**n <= alpha: the plan when every example is expected to succeed."""
    return max(1, math.ceil(math.log(alpha) / math.log(tau)))


def plan(
    estimate: float, tau: float, direction: Literal[">=", "<="], alpha: float, power: float, method: Method
) -> tuple[int | None, str | None, str | None]:
    """Sample size that would settle the gate if ``estimate`` were the true rate.

    Returns ``(n_needed, toward, plan_method)``: ``toward`` is ``"pass"`` when the estimate sits on
    the passing side of ``tau`` and ``"fail"`` otherwise; all three are ``None`` when the estimate
    equals ``tau`` (no finite plan) or is undefined (no data).
    """
    if not math.isfinite(estimate) or estimate == tau:
        return None, None, None
    above = estimate > tau
    toward = "pass" if above == (direction == ">=") else "fail"
    # Every case reduces to "show the rate exceeds a bound", mirroring rates around 1/2 if needed.
    lo_rate, hi_rate = (tau, estimate) if above else (1.0 - tau, 1.0 - estimate)
    if method == "wilson":
        if hi_rate >= 1.0:
            return _zero_failure_guess(lo_rate, alpha), toward, "normal"
        return normal_plan(lo_rate, hi_rate, alpha, power), toward, "normal"
    n, how = exact_plan(lo_rate, hi_rate, alpha, power)
    return n, toward, how
