"""``bootstrap_threshold``: metrics with no closed-form interval, decided on a seeded BCa
bootstrap computed from counts (see :mod:`gates.stats.metrics`).

Errored rows under ``count_as_failure``: for classification metrics the prediction becomes a
"no prediction" value that is wrong for every class; for AUC the score becomes the worst possible
for the row's label; RMSE/MAE have no failure value, so errored rows must be excluded.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray
from scipy import special

from gates.data import TableView
from gates.errors import GateDataError
from gates.kinds._common import Context, Evidence, Selection, min_n_check, select
from gates.spec import BootstrapGate
from gates.stats import bootstrap, metrics


def _numpy(col: pa.ChunkedArray | pa.Array) -> NDArray[np.float64]:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _numeric(gate: BootstrapGate, view: TableView, sel: Selection, name: str) -> NDArray[np.float64]:
    """A numeric column as float64 (nulls on errored rows become NaN and are never used)."""
    col = _no_nulls(gate, view, sel, name)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type)):
        raise GateDataError(
            f"metric {gate.metric!r} needs a numeric {name!r} column, got {col.type}", gate_id=gate.id, field="metric"
        )
    return _numpy(pc.cast(col, pa.float64()))


def _no_nulls(gate: BootstrapGate, view: TableView, sel: Selection, name: str) -> pa.ChunkedArray:
    col = view.column(name, gate_id=gate.id, field="metric")
    valid = np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), dtype=np.bool_)
    nulls = int(np.count_nonzero(sel.mask & ~sel.errored & ~valid))
    if nulls:
        raise GateDataError(f"{nulls} selected rows have a null {name!r} and no error", gate_id=gate.id, field="metric")
    return col


def _class_codes(gate: BootstrapGate, view: TableView, sel: Selection) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Codes of label and prediction in one shared class dictionary; -1 marks "no prediction"."""
    label = _no_nulls(gate, view, sel, "label")
    pred = _no_nulls(gate, view, sel, "prediction")
    if label.type != pred.type:
        numeric = all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in (label.type, pred.type))
        target = pa.float64() if numeric else pa.string()
        label, pred = label.cast(target), pred.cast(target)
    both = pa.chunked_array(label.chunks + pred.chunks, type=label.type).dictionary_encode()
    codes = np.asarray(pc.fill_null(both.combine_chunks().indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    lab, prd = codes[: view.n], codes[view.n :].copy()
    if gate.on_error == "count_as_failure":
        prd[sel.errored] = -1
    return lab, prd


def _positive(gate: BootstrapGate, view: TableView, sel: Selection) -> NDArray[np.bool_]:
    label = _no_nulls(gate, view, sel, "label")
    if gate.positive_label is not None:
        flag = pc.equal(label, pa.scalar(gate.positive_label).cast(label.type, safe=False))
    elif pa.types.is_boolean(label.type):
        flag = label
    elif pa.types.is_integer(label.type) or pa.types.is_floating(label.type):
        flag = pc.equal(label, 1)
    else:
        raise GateDataError(
            f"metric 'auc' needs a binary label; the label column is {label.type}, so set positive_label",
            gate_id=gate.id,
            field="positive_label",
        )
    return np.asarray(pc.fill_null(flag, False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _builder(
    gate: BootstrapGate, view: TableView, sel: Selection
) -> Callable[[NDArray[np.bool_]], tuple[metrics.CountModel, int | None]]:
    """Read and clean the columns once; return a function building one slice's model and its
    failure count (misclassified rows; ``None`` for AUC and the error metrics)."""
    if gate.metric == "auc":
        pos = _positive(gate, view, sel)
        scores = _numeric(gate, view, sel, "score")
        if gate.on_error == "count_as_failure" and sel.errored.any():
            low, high = float(np.nanmin(scores)) - 1.0, float(np.nanmax(scores)) + 1.0
            scores = scores.copy()
            scores[sel.errored] = np.where(pos[sel.errored], low, high)
        return lambda rows: (metrics.auc_model(pos[rows], scores[rows]), None)
    if gate.metric in ("rmse", "mae"):
        if gate.on_error == "count_as_failure" and sel.errored.any():
            raise GateDataError(
                f"metric {gate.metric!r} has no failure value for errored rows; set on_error: exclude",
                gate_id=gate.id,
                field="on_error",
            )
        diff = _numeric(gate, view, sel, "prediction") - _numeric(gate, view, sel, "label")
        kind: metrics.ErrorMetric = gate.metric
        return lambda rows: (metrics.error_model(kind, diff[rows]), None)
    lab_all, prd_all = _class_codes(gate, view, sel)
    metric: metrics.ConfusionMetric = gate.metric  # type: ignore[assignment]

    def build(rows: NDArray[np.bool_]) -> tuple[metrics.CountModel, int | None]:
        lab, prd = lab_all[rows], prd_all[rows]
        # Classes are those seen in this slice's labels or predictions (scikit-learn's default).
        present, inverse = np.unique(np.concatenate([lab, prd[prd >= 0]]), return_inverse=True)
        k = present.size
        pred_codes = np.full(prd.size, k, dtype=np.int64)
        pred_codes[prd >= 0] = inverse[lab.size :]
        model = metrics.confusion_model(metric, inverse[: lab.size].astype(np.int64), pred_codes, k)
        return model, int(np.count_nonzero(lab != prd))

    return build


def evaluate(gate: BootstrapGate, ctx: Context) -> list[Evidence]:
    """Per-slice evidence for a bootstrap-threshold gate."""
    view = ctx.candidate
    sel = select(gate, view)
    alpha = ctx.alpha(gate)
    errs = sel.errors()
    method = f"{gate.ci_method}_bootstrap"
    build = _builder(gate, view, sel)
    out: list[Evidence] = []
    for i, label in enumerate(sel.labels):
        rows = sel.mask & (sel.codes == i)
        n = int(np.count_nonzero(rows))
        ev = Evidence(
            label, None, None, None, method, gate.threshold, gate.direction, None, None, n, None, int(errs[i])
        )
        if n:
            model, ev.failures = build(rows)
            bb = bootstrap.bca_bounds(model, gate.threshold, alpha, gate.n_resamples, gate.seed, gate.ci_method)
            up = gate.direction == ">="
            ev.estimate, ev.lower, ev.upper = bb.estimate, bb.lower, bb.upper
            ev.p_pass, ev.p_fail = (bb.p_greater, bb.p_less) if up else (bb.p_less, bb.p_greater)
            pass_ok, fail_ok = (bb.lower_resolved, bb.upper_resolved) if up else (bb.upper_resolved, bb.lower_resolved)
            ev.can_pass, ev.can_fail = pass_ok, fail_ok
            if not math.isfinite(bb.estimate):
                ev.can_pass = ev.can_fail = False
                ev.notes.append(f"{gate.metric} is undefined on these rows (e.g. AUC needs both classes)")
            elif not bb.std_error > 0:
                # A bootstrap cannot see variability it never observed (e.g. 100 % accuracy).
                ev.can_pass = ev.can_fail = False
                ev.notes.append("the bootstrap distribution is degenerate (all resamples equal); not decided")
            elif not (pass_ok and fail_ok):
                ev.notes.append(
                    f"{gate.n_resamples} resamples cannot resolve a bound at alpha = {alpha:.3g}; raise n_resamples"
                )
            if bb.n_invalid:
                ev.notes.append(f"{bb.n_invalid} resamples had an undefined metric and were dropped")
            ev.details.update(
                metric=gate.metric,
                std_error=bb.std_error,
                bias_z0=bb.bias_z0,
                acceleration=bb.acceleration,
                n_resamples=gate.n_resamples,
            )
            gap = bb.estimate - gate.threshold
            if gap != 0 and math.isfinite(bb.std_error) and bb.std_error > 0:
                z = float(special.ndtri(1 - alpha) + special.ndtri(gate.power))
                ev.n_needed = max(1, math.ceil(n * (z * bb.std_error / abs(gap)) ** 2))
                ev.toward = "pass" if (gap > 0) == up else "fail"
                ev.details["plan_method"] = "bootstrap_se"
        min_n_check(ev, gate.min_n)
        out.append(ev)
    return out
