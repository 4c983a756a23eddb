"""Seeded count bootstrap with BCa (or percentile) one-sided bounds and the p-values that invert
exactly to them.

Decision/bound duality: with ``F(t) = #{replicates < t} / B`` and the BCa-adjusted lower quantile
level ``q``, the lower bound is the order statistic ``r_(floor(qB) + 1)``, and the reported
``p_greater(tau)`` is the level at which that bound would equal ``tau``. Hence
``p_greater <= alpha  <=>  lower >= tau`` without interpolation ambiguity, and likewise for the
upper bound and ``p_less``. A bound whose adjusted level asks for a quantile beyond the
resolution of ``B`` replicates is flagged ``resolved=False`` (the engine then cannot decide on
that side and says to raise ``n_resamples``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

from gates.stats.metrics import CountModel, FloatArray

CiMethod = Literal["bca", "percentile"]

# Resamples are drawn in chunks so memory stays ~ chunk x cells whatever B is; the chunk size is
# fixed so a given seed always yields the same replicates.
_CHUNK_CELLS = 1 << 22


@dataclass(frozen=True)
class BootstrapBounds:
    """One-sided ``1 - alpha`` bounds, p-values at ``tau`` and diagnostics of one bootstrap."""

    estimate: float
    lower: float
    upper: float
    p_greater: float
    p_less: float
    std_error: float
    bias_z0: float
    acceleration: float
    lower_resolved: bool
    upper_resolved: bool
    n_resamples: int
    n_invalid: int


def replicates(model: CountModel, n_resamples: int, seed: int) -> FloatArray:
    """``n_resamples`` bootstrap replicates of ``model``'s statistic, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    n = int(model.counts.sum())
    probs = model.counts / n
    chunk = max(1, min(n_resamples, _CHUNK_CELLS // max(1, model.counts.size)))
    out = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        draws = rng.multinomial(n, probs, size=size).astype(np.float64)
        out[start : start + size] = model.statistic(draws, rng)
    return out + model.shift


def _acceleration(values: FloatArray, weights: FloatArray) -> float:
    """BCa acceleration from weighted jackknife values (Efron 1987)."""
    centre = float(np.average(values, weights=weights))
    dev = centre - values
    den = float((weights * dev * dev).sum())
    if den <= 0.0:
        return 0.0
    skew = float((weights * dev**3).sum())
    return skew / (6.0 * den * math.sqrt(den))


def _level(z0: float, accel: float, z: float) -> float:
    """BCa-adjusted quantile level for the nominal normal quantile ``z``."""
    shifted = z0 + z
    denom = 1.0 - accel * shifted
    if denom <= 0.0:
        return 1.0 if shifted > 0 else 0.0
    return float(special.ndtr(z0 + shifted / denom))


def _inverse(z0: float, accel: float, level: float) -> float:
    """Nominal one-sided level alpha' whose BCa lower level equals ``level`` (the p-value map)."""
    w = float(special.ndtri(level)) - z0
    denom = 1.0 + accel * w
    if denom <= 0.0:
        return 1.0 if w > 0 else 0.0
    return float(special.ndtr(w / denom - z0))


def _agree(p: float, clears: bool, alpha: float) -> float:
    """The p-value, nudged across ``alpha`` only when floating-point rounding put it on the other
    side from the order-statistic bound it inverts (the two agree in exact arithmetic)."""
    if abs(p - alpha) > 1e-9:
        return p
    if clears and p > alpha:
        return alpha
    if not clears and p <= alpha:
        return math.nextafter(alpha, 1.0)
    return p


def bca_bounds(
    model: CountModel, tau: float, alpha: float, n_resamples: int, seed: int, method: CiMethod = "bca"
) -> BootstrapBounds:
    """Bootstrap ``model`` and return BCa (or percentile) one-sided bounds and p-values at ``tau``.

    ``p_greater`` is the bootstrap p-value for H0 "metric <= tau", ``p_less`` for "metric >= tau".
    Replicates that are undefined (e.g. AUC of a resample without positives) are dropped and
    counted in ``n_invalid``.
    """
    raw = replicates(model, n_resamples, seed)
    finite = raw[np.isfinite(raw)]
    b = finite.size
    if b == 0:
        return BootstrapBounds(
            model.estimate, -math.inf, math.inf, 1.0, 1.0, math.nan, 0.0, 0.0, False, False, n_resamples, n_resamples
        )
    finite.sort()
    est = model.estimate
    half = 0.5 / b
    z0 = accel = 0.0
    if method == "bca":
        # Ties at the estimate count half, so a discrete metric is not biased to one side.
        below = (np.count_nonzero(finite < est) + 0.5 * np.count_nonzero(finite == est)) / b
        z0 = float(special.ndtri(min(max(below, half), 1.0 - half)))
        accel = _acceleration(*model.jackknife())
    q_lo = _level(z0, accel, float(special.ndtri(alpha)))
    q_hi = _level(z0, accel, float(special.ndtri(1.0 - alpha)))
    # The 1e-9 keeps floor() from dropping a whole replicate when q * b is an integer in exact
    # arithmetic but lands a hair below it in floating point.
    m_lo = math.floor(q_lo * b + 1e-9)
    m_hi = math.floor((1.0 - q_hi) * b + 1e-9)
    lower = float(finite[min(m_lo, b - 1)])
    upper = float(finite[max(b - 1 - m_hi, 0)])
    f_below = np.count_nonzero(finite < tau) / b
    f_above = np.count_nonzero(finite > tau) / b
    p_greater = _agree(_inverse(z0, accel, min(max(f_below, half), 1.0 - half)), lower >= tau, alpha)
    p_less = _agree(1.0 - _inverse(z0, accel, 1.0 - min(max(f_above, half), 1.0 - half)), upper <= tau, alpha)
    return BootstrapBounds(
        estimate=est,
        lower=lower,
        upper=upper,
        p_greater=p_greater,
        p_less=p_less,
        std_error=float(finite.std(ddof=1)) if b > 1 else math.nan,
        bias_z0=z0,
        acceleration=accel,
        lower_resolved=q_lo * b >= 1.0,
        upper_resolved=(1.0 - q_hi) * b >= 1.0,
        n_resamples=n_resamples,
        n_invalid=n_resamples - b,
    )
