"""Largest-Triangle-Three-Buckets downsampling (Steinarsson, 2013) for metric charts.

A chart a thousand pixels wide cannot show a million points; sending them costs seconds. LTTB keeps the first
and last points and, from each of ``n_out - 2`` equal buckets in between, the point forming the largest
triangle with the point kept before it and the mean of the next bucket: peaks and troughs survive, which a
stride or a mean would lose. numpy is imported on first use, so an API process that draws no chart never loads
it (the start-up import test holds the server to that).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def lttb_indices(x: Sequence[float] | npt.ArrayLike, y: Sequence[float] | npt.ArrayLike, n_out: int) -> np.ndarray:
    """Indices (ascending) of the ``n_out`` points of ``(x, y)`` that LTTB keeps; all of them when there are
    no more than ``n_out``. ``x`` must be sorted ascending. Raises ValueError when ``n_out < 3`` or the
    lengths differ."""
    import numpy as np

    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError("x and y must be one-dimensional and of the same length")
    n = xs.size
    if n_out < 3:
        raise ValueError("n_out must be at least 3 (the first point, the last point and one bucket)")
    if n <= n_out:
        return np.arange(n)
    # Bucket b (0 .. n_out-3) covers [edges[b], edges[b+1]) of the inner points 1 .. n-2.
    edges = (np.floor(np.arange(n_out - 1) * ((n - 2) / (n_out - 2))) + 1).astype(np.int64)
    edges[-1] = n - 1
    counts = np.diff(edges)
    mean_x = np.add.reduceat(xs[:-1], edges[:-1]) / counts
    mean_y = np.add.reduceat(ys[:-1], edges[:-1]) / counts
    # The triangle's third corner for bucket b is the next bucket's mean; for the last bucket, the last point.
    next_x = np.append(mean_x[1:], xs[-1])
    next_y = np.append(mean_y[1:], ys[-1])
    kept = np.empty(n_out, dtype=np.int64)
    kept[0], kept[-1] = 0, n - 1
    a = 0
    # Sequential by nature (each choice depends on the one before), but each step is vectorised over its
    # bucket: n_out small numpy calls, whatever n is.
    for b in range(n_out - 2):
        lo, hi = edges[b], edges[b + 1]
        ax, ay = xs[a], ys[a]
        area = np.abs((ax - next_x[b]) * (ys[lo:hi] - ay) - (ax - xs[lo:hi]) * (next_y[b] - ay))
        a = lo + int(np.argmax(area))
        kept[b + 1] = a
    return kept


def downsample(x: Sequence[float], y: Sequence[float], n_out: int) -> tuple[list[float], list[float]]:
    """``(x, y)`` reduced to at most ``n_out`` points by LTTB, as plain lists (for JSON)."""
    import numpy as np

    if len(x) <= n_out:
        return list(x), list(y)
    keep = lttb_indices(x, y, n_out)
    xs, ys = np.asarray(x, dtype=np.float64)[keep], np.asarray(y, dtype=np.float64)[keep]
    return xs.tolist(), ys.tolist()
