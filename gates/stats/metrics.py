"""Metrics without a closed-form interval, reduced to counts over a small set of cells so that a
bootstrap resample is one multinomial draw over the cells instead of n row indices.

Resampling n rows with replacement and tallying them by cell *is* a Multinomial(n, counts / n)
draw over the cells, so for confusion-matrix metrics the count bootstrap is exactly the row
bootstrap at a cost independent of n. Two metrics need more cells than is practical and are
binned, documented per builder: AUC (scores grouped into at most 1,024 quantile bins) and the
error metrics RMSE/MAE (values grouped into at most 4,096 quantile bins, with the within-bin
spread added back as normal noise).

Every builder returns a :class:`CountModel`: the observed cell counts, a vectorised statistic
over a batch of count vectors, the point estimate on the full (unbinned) data, and the cell-wise
jackknife used for the BCa acceleration (leaving one row out only depends on its cell).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sparse
from numpy.typing import NDArray

ConfusionMetric = Literal["accuracy", "f1_macro", "precision_macro", "recall_macro"]
ErrorMetric = Literal["rmse", "mae"]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
# counts (B, cells) and an optional generator for models that add within-cell noise -> (B,)
Statistic = Callable[[FloatArray, np.random.Generator | None], FloatArray]

AUC_BINS = 1_024
ERROR_BINS = 4_096


@dataclass(frozen=True)
class CountModel:
    """A metric expressed over cells: resample ``counts`` multinomially, apply ``statistic``.

    ``shift`` is added to every replicate so the bootstrap distribution is centred on the exact
    estimate when the statistic runs on binned cells (zero otherwise).
    """

    counts: IntArray
    statistic: Statistic
    estimate: float
    shift: float

    def jackknife(self) -> tuple[FloatArray, FloatArray]:
        """Leave-one-out estimates per cell and their weights (rows in the cell)."""
        cells = self.counts.size
        values = np.empty(cells, dtype=np.float64)
        base = self.counts.astype(np.float64)
        step = max(1, (1 << 22) // max(cells, 1))
        for start in range(0, cells, step):
            idx = np.arange(start, min(cells, start + step))
            batch = np.broadcast_to(base, (idx.size, cells)).copy()
            batch[np.arange(idx.size), idx] -= 1.0
            values[idx] = self.statistic(batch, None)
        return values + self.shift, base


def _safe_div(num: FloatArray, den: FloatArray) -> FloatArray:
    """num / den with 0 where den == 0 (scikit-learn's ``zero_division=0``)."""
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def confusion_model(metric: ConfusionMetric, label_codes: IntArray, pred_codes: IntArray, n_classes: int) -> CountModel:
    """Macro precision/recall/F1 or accuracy from class codes in ``[0, n_classes)``.

    ``pred_codes`` may hold ``n_classes`` for "no valid prediction" (an errored row counted as a
    failure): it is wrong for its true class and is no class of its own. Macro averages run over
    all ``n_classes`` (the union of observed labels and predictions), a class absent from a
    resample scoring 0, as scikit-learn does with ``zero_division=0``.
    """
    width = n_classes + 1
    flat = np.bincount(label_codes * width + pred_codes, minlength=n_classes * width)
    cells = np.flatnonzero(flat)
    rows, cols = cells // width, cells % width
    ones = np.ones(cells.size)
    shape = (cells.size, n_classes)
    pick = np.arange(cells.size)
    diag = rows == cols
    tp_map = sparse.csr_array((ones[diag], (pick[diag], rows[diag])), shape=shape)
    true_map = sparse.csr_array((ones, (pick, rows)), shape=shape)
    valid = cols < n_classes
    pred_map = sparse.csr_array((ones[valid], (pick[valid], cols[valid])), shape=shape)

    def statistic(counts: FloatArray, rng: np.random.Generator | None) -> FloatArray:
        tp = np.asarray(counts @ tp_map)
        if metric == "accuracy":
            return np.asarray(tp.sum(axis=1) / counts.sum(axis=1), dtype=np.float64)
        true = np.asarray(counts @ true_map)
        pred = np.asarray(counts @ pred_map)
        if metric == "precision_macro":
            per_class = _safe_div(tp, pred)
        elif metric == "recall_macro":
            per_class = _safe_div(tp, true)
        else:
            per_class = _safe_div(2.0 * tp, true + pred)
        return np.asarray(per_class.mean(axis=1), dtype=np.float64)

    counts = flat[cells].astype(np.int64)
    estimate = float(statistic(counts[None, :].astype(np.float64), None)[0])
    return CountModel(counts=counts, statistic=statistic, estimate=estimate, shift=0.0)


def _auc_from(pos: FloatArray, neg: FloatArray) -> FloatArray:
    """AUC (ties count 1/2) from per-score-group positive/negative counts, groups in score order."""
    below = np.cumsum(neg, axis=-1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=-1)
    den = pos.sum(axis=-1) * neg.sum(axis=-1)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def auc_model(positive: NDArray[np.bool_], scores: FloatArray) -> CountModel:
    """ROC AUC of ``scores`` for the ``positive`` indicator (Mann-Whitney form, ties = 1/2).

    The estimate is exact. With more than 1,024 distinct scores the resampling runs on quantile
    bins of the score (ties never split across bins) and the replicates are shifted by the exact
    minus binned estimate; the bins only coarsen rank ties inside a bin, so the spread of the
    bootstrap distribution is essentially unchanged.
    """
    uniq, inverse = np.unique(scores, return_inverse=True)
    pos = np.asarray(np.bincount(inverse, weights=positive, minlength=uniq.size), dtype=np.float64)
    total = np.bincount(inverse, minlength=uniq.size).astype(np.float64)
    estimate = float(_auc_from(pos, total - pos))
    if uniq.size > AUC_BINS:
        edges = np.unique(np.quantile(scores, np.linspace(0, 1, AUC_BINS + 1)[1:-1]))
        group = np.searchsorted(edges, uniq, side="left")
        groups = int(group.max()) + 1
        pos = np.asarray(np.bincount(group, weights=pos, minlength=groups), dtype=np.float64)
        total = np.asarray(np.bincount(group, weights=total, minlength=groups), dtype=np.float64)
    neg = total - pos
    groups = pos.size
    both = np.concatenate([neg, pos])
    cells = np.flatnonzero(both)

    def statistic(counts: FloatArray, rng: np.random.Generator | None) -> FloatArray:
        dense = np.zeros((counts.shape[0], 2 * groups))
        dense[:, cells] = counts
        return _auc_from(dense[:, groups:], dense[:, :groups])

    binned = float(statistic(both[cells][None, :], None)[0])
    return CountModel(
        counts=both[cells].astype(np.int64), statistic=statistic, estimate=estimate, shift=estimate - binned
    )


def error_model(metric: ErrorMetric, errors: FloatArray) -> CountModel:
    """RMSE or MAE of per-row errors ``prediction - label``.

    Values are grouped by distinct value, or into 4,096 quantile bins when there are more; a
    resample draws counts per group and adds, for binned groups, the within-group deviation of
    the drawn rows as ``Normal(0, sum counts_j * var_j)`` (the central limit theorem inside each
    bin), so the resampled mean keeps its full variance.
    """
    values = errors * errors if metric == "rmse" else np.abs(errors)
    uniq, inverse = np.unique(values, return_inverse=True)
    if uniq.size > ERROR_BINS:
        edges = np.unique(np.quantile(values, np.linspace(0, 1, ERROR_BINS + 1)[1:-1]))
        inverse = np.searchsorted(edges, values, side="left")
    counts = np.bincount(inverse).astype(np.float64)
    keep = counts > 0
    sums = np.bincount(inverse, weights=values)[keep]
    squares = np.bincount(inverse, weights=values * values)[keep]
    counts = counts[keep]
    means = sums / counts
    variances = np.maximum(squares / counts - means * means, 0.0)
    noisy = bool(variances.any())

    def statistic(batch: FloatArray, rng: np.random.Generator | None) -> FloatArray:
        total = batch @ means
        if rng is not None and noisy:
            total = total + np.sqrt(batch @ variances) * rng.standard_normal(batch.shape[0])
        mean = np.maximum(total / batch.sum(axis=1), 0.0)
        return np.asarray(np.sqrt(mean) if metric == "rmse" else mean, dtype=np.float64)

    mean = float(values.mean())
    estimate = float(np.sqrt(mean)) if metric == "rmse" else mean
    return CountModel(counts=counts.astype(np.int64), statistic=statistic, estimate=estimate, shift=0.0)
