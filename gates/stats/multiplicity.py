"""Fail-side multiplicity adjustment across the slices of a gate.

Promotion needs every gate and slice to PASS, an intersection-union test, so the PASS side needs
no correction: each test at level alpha already bounds P(promote a model violating any
requirement) by alpha (Berger 1982). Blocking on *any* FAIL among m slices would, uncorrected,
wrongly block a good model with probability up to m * alpha, so FAIL decisions use adjusted
p-values (Holm 1979 by default: uniformly more powerful than Bonferroni, valid under any
dependence).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

Adjustment = Literal["holm", "bonferroni", "none"]


def adjust(p_values: NDArray[np.float64], method: Adjustment) -> NDArray[np.float64]:
    """Adjusted p-values, same order as the input; rejecting where ``adjusted <= alpha`` controls
    the family-wise error rate at alpha (for ``holm`` and ``bonferroni``).

    Holm: sort ascending, ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` (1-based).
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m <= 1 or method == "none":
        return p.copy()
    if method == "bonferroni":
        return np.minimum(1.0, p * m)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, p[order] * (m - np.arange(m)))
    out = np.empty_like(p)
    out[order] = np.maximum.accumulate(scaled)
    return out
