"""Paired comparison of two classifiers on the same examples: non-inferiority of the difference
in accuracy and the exact McNemar test.

Notation: ``n`` paired examples; ``b`` = baseline right & candidate wrong; ``c`` = baseline wrong &
candidate right; the difference is ``delta = (c - b) / n`` (candidate minus baseline). Only the
discordant pairs ``b + c`` carry information, which is why ``psi = (b + c) / n`` drives the plan.

Two interval methods, both one-sided at ``1 - alpha`` per side:

* ``agresti_min`` (Agresti & Min 2005): the Wald interval after adding 1/2 to each of the four
  cells (n -> n + 2). Closed form and the engine's default.
* ``tango`` (Tango 1998): inverts the score test whose variance uses the maximum-likelihood
  estimate restricted to the null difference; better when discordant pairs are few.

For a margin ``m`` the non-inferiority null is "delta <= -m"; ``p_greater`` tests it (small when
the candidate is shown to be no worse than ``m``), ``p_less`` tests "delta >= -m".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import optimize, special

PairedMethod = Literal["agresti_min", "tango"]


@dataclass(frozen=True)
class DifferenceBounds:
    """Estimate, one-sided bounds and the two non-inferiority p-values at ``-margin``."""

    estimate: float
    lower: float
    upper: float
    p_greater: float
    p_less: float


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for "no difference": ``min(1, 2 P(Bin(b+c, 1/2) <= min(b, c)))``."""
    if b + c == 0:
        return 1.0
    return min(1.0, 2.0 * float(special.bdtr(min(b, c), b + c, 0.5)))


def agresti_min(b: int, c: int, n: int, margin: float, alpha: float) -> DifferenceBounds:
    """Agresti-Min adjusted Wald bounds for ``delta`` and the matching z-test p-values at ``-margin``."""
    b2, c2, n2 = b + 0.5, c + 0.5, n + 2
    d = (c2 - b2) / n2
    # Adding 1/2 to each cell keeps the variance strictly positive even when b = c = 0.
    se = math.sqrt(((b2 + c2) / n2 - d * d) / n2)
    z = float(special.ndtri(1.0 - alpha))
    score = (d + margin) / se
    return DifferenceBounds(
        estimate=(c - b) / n,
        lower=max(-1.0, d - z * se),
        upper=min(1.0, d + z * se),
        p_greater=float(special.ndtr(-score)),
        p_less=float(special.ndtr(score)),
    )


def tango_score(b: int, c: int, n: int, delta0: float) -> float:
    """Tango's score statistic for H0 "delta = delta0" (positive when the data favour a larger delta).

    The restricted MLE of the baseline-only-right probability q solves
    ``2n q^2 - (b + c - delta0 (2n + b - c)) q - b delta0 (1 - delta0) = 0`` (the positive root).
    """
    if b + c == 0:
        # No discordant pair: the restricted MLE is q = max(0, -delta0) and the statistic reduces
        # to sign(-delta0) sqrt(n |delta0| / (1 - |delta0|)); in closed form it stays exact for
        # tiny margins, where the quadratic's root would underflow.
        if delta0 == 0.0:
            return 0.0
        size = abs(delta0)
        return (
            math.copysign(math.sqrt(n * size / (1.0 - size)), -delta0)
            if size < 1.0
            else -math.copysign(math.inf, delta0)
        )
    a_ = 2.0 * n
    b_ = -(b + c) + delta0 * (2.0 * n + b - c)
    c_ = -b * delta0 * (1.0 - delta0)
    q = (-b_ + math.sqrt(max(0.0, b_ * b_ - 4.0 * a_ * c_))) / (2.0 * a_)
    var = n * (2.0 * q + delta0 - delta0 * delta0)
    num = c - b - n * delta0
    if var <= 0.0:
        # Only when b = c = 0 and delta0 = 0: no discordant pair, no evidence either way.
        return 0.0 if num == 0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango(b: int, c: int, n: int, margin: float, alpha: float) -> DifferenceBounds:
    """Tango score bounds for ``delta`` (root-found) and the score-test p-values at ``-margin``."""
    z = float(special.ndtri(1.0 - alpha))
    est = (c - b) / n
    eps = 1e-12

    def f(delta0: float, target: float) -> float:
        return tango_score(b, c, n, delta0) - target

    # The score decreases in delta0; each bound is where it crosses +z (lower) or -z (upper).
    lower = -1.0 if f(-1.0 + eps, z) <= 0 else float(optimize.brentq(f, -1.0 + eps, est, args=(z,)))
    upper = 1.0 if f(1.0 - eps, -z) >= 0 else float(optimize.brentq(f, est, 1.0 - eps, args=(-z,)))
    score = tango_score(b, c, n, -margin)
    return DifferenceBounds(
        estimate=est,
        lower=lower,
        upper=upper,
        p_greater=float(special.ndtr(-score)),
        p_less=float(special.ndtr(score)),
    )


def difference_bounds(b: int, c: int, n: int, margin: float, alpha: float, method: PairedMethod) -> DifferenceBounds:
    """Dispatch to :func:`agresti_min` or :func:`tango`. Requires ``n >= 1``."""
    if method == "tango":
        return tango(b, c, n, margin, alpha)
    return agresti_min(b, c, n, margin, alpha)


def _restricted_variance(q_b: float, q_c: float, delta0: float) -> float:
    """Per-pair variance of ``c - b`` under H0 "delta = delta0" at the restricted MLE, for
    population discordance rates ``q_b``, ``q_c`` (Tango's quadratic divided by n)."""
    b_ = -(q_b + q_c) + delta0 * (2.0 + q_b - q_c)
    c_ = -q_b * delta0 * (1.0 - delta0)
    q = (-b_ + math.sqrt(max(0.0, b_ * b_ - 8.0 * c_))) / 4.0
    return max(0.0, 2.0 * q + delta0 - delta0 * delta0)


def paired_plan(
    b: int, c: int, n: int, margin: float, alpha: float, power: float, method: PairedMethod = "agresti_min"
) -> tuple[int | None, str | None]:
    """Normal-approximation plan at the observed discordance and difference.

    ``n = ((z_{1-alpha} sqrt(v0) + z_{power} sqrt(v1)) / (delta + margin))^2`` with
    ``v1 = psi - delta^2`` the variance per pair at the observed rates and ``v0`` the variance
    the test uses under the null: ``v1`` again for Agresti-Min (Connor 1987), the restricted-MLE
    variance at ``delta = -margin`` for Tango's score test. Returns ``(n_needed, toward)``,
    ``toward`` "pass" when ``delta > -margin`` and "fail" below; ``(None, None)`` on the margin.
    """
    delta = (c - b) / n
    gap = delta + margin
    if gap == 0.0:
        return None, None
    psi = (b + c) / n
    # No discordance observed (or all pairs discordant one way): plan from one discordant pair's
    # worth of variance rather than report an impossible zero.
    v1 = max(psi - delta * delta, 1.0 / n)
    v0 = max(_restricted_variance(b / n, c / n, -margin), 1.0 / n) if method == "tango" else v1
    za = float(special.ndtri(1.0 - alpha))
    zb = float(special.ndtri(power))
    root = za * math.sqrt(v0) + zb * math.sqrt(v1)
    toward = "pass" if gap > 0 else "fail"
    try:
        needed = max(1, math.ceil((root / gap) ** 2))
    except OverflowError:  # a gap of ~1e-150 or less: no finite plan can separate it from the margin
        return None, toward
    return needed, toward
