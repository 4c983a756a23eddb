"""``paired_noninferiority``: candidate vs baseline on the same examples, joined on ``id``.

Requirement: accuracy(candidate) - accuracy(baseline) > -margin. Decided on Tango's score
interval by default (``method: agresti_min`` selectable); the exact two-sided McNemar p-value for
"no difference" is reported alongside for information, not used to decide.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from gates.data import TableView
from gates.errors import GateDataError
from gates.kinds._common import Context, Evidence, min_n_check, outcome_with_errors, select
from gates.spec import PairedGate
from gates.stats import paired


def _join(cand: TableView, base: TableView) -> NDArray[np.int64]:
    """Row index in ``base`` of each candidate id, -1 when absent (ids compared as text when
    the two tables typed them differently)."""
    left, right = cand.ids, base.ids
    if left.equals(right):
        # Same ids in the same order (both tables scored the same file): the identity join.
        return np.arange(cand.n, dtype=np.int64)
    if pa.types.is_integer(left.type) and pa.types.is_integer(right.type):
        lv = np.asarray(left.to_numpy(), dtype=np.int64)
        rv = np.asarray(right.to_numpy(), dtype=np.int64)
        order = np.argsort(rv, kind="stable")
        pos = np.minimum(np.searchsorted(rv[order], lv), rv.size - 1)
        return np.where(rv[order][pos] == lv, order[pos], -1).astype(np.int64)
    if left.type != right.type:
        left, right = left.cast(pa.string()), right.cast(pa.string())
    idx = pc.index_in(left, value_set=right.combine_chunks())
    return np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def evaluate(gate: PairedGate, ctx: Context) -> list[Evidence]:
    """Per-slice evidence for a paired non-inferiority gate."""
    cand, base = ctx.candidate, ctx.baseline
    if base is None:
        raise GateDataError(
            f"this gate compares with a baseline ({gate.baseline}) but no baseline table was given",
            gate_id=gate.id,
            field="baseline",
        )
    if "join" not in ctx.cache:
        ctx.cache["join"] = _join(cand, base)
    where_in_base: NDArray[np.int64] = ctx.cache["join"]
    matched = where_in_base >= 0
    missing_in_base = int(np.count_nonzero(~matched))
    missing_in_cand = base.n - int(np.count_nonzero(matched))
    notes: list[str] = []
    if missing_in_base or missing_in_cand:
        sample = cand.ids.filter(pa.array(~matched)).slice(0, 5).to_pylist()
        message = (
            f"{missing_in_base} candidate ids have no baseline row (e.g. {sample!r}) and "
            f"{missing_in_cand} baseline ids have no candidate row"
        )
        if gate.unmatched == "error":
            raise GateDataError(
                message + "; set unmatched: drop to compare the shared ids", gate_id=gate.id, field="id"
            )
        notes.append(message + "; compared on the shared ids only")

    sel = select(gate, cand)
    safe = np.where(matched, where_in_base, 0)
    base_errored = base.errored()[safe] & matched
    cand_ok = outcome_with_errors(gate, cand, gate.outcome, sel, failure_value=False)
    base_values, base_valid = base.outcome(gate.outcome, gate_id=gate.id)
    base_ok = base_values[safe].copy()
    usable = sel.mask & matched
    if gate.on_error == "exclude":
        usable &= ~base_errored
    elif base_errored.any():
        base_ok[base_errored] = False
    nulls = int(np.count_nonzero(usable & ~base_valid[safe] & ~base_errored))
    if nulls:
        raise GateDataError(
            f"{nulls} paired rows of the baseline table have a null {gate.outcome!r} and no error",
            gate_id=gate.id,
            field="outcome",
        )
    k = len(sel.labels)

    def per_slice(rows: NDArray[np.bool_]) -> NDArray[np.int64]:
        return np.bincount(sel.codes[rows & usable], minlength=k).astype(np.int64)

    bs = per_slice(base_ok & ~cand_ok)
    cs = per_slice(~base_ok & cand_ok)
    ns = per_slice(np.ones(cand.n, dtype=np.bool_))
    wrong = per_slice(~cand_ok)
    errs = sel.errors()
    base_errs = np.bincount(sel.codes[base_errored & sel.mask], minlength=k)
    alpha = ctx.alpha(gate)
    out: list[Evidence] = []
    for i, label in enumerate(sel.labels):
        b, c, n = int(bs[i]), int(cs[i]), int(ns[i])
        ev = Evidence(
            label, None, None, None, gate.method, -gate.margin, ">=", None, None, n, int(wrong[i]), int(errs[i])
        )
        ev.notes.extend(notes)
        if n:
            d = paired.difference_bounds(b, c, n, gate.margin, alpha, gate.method)
            ev.estimate, ev.lower, ev.upper, ev.p_pass, ev.p_fail = d.estimate, d.lower, d.upper, d.p_greater, d.p_less
            ev.n_needed, ev.toward = paired.paired_plan(b, c, n, gate.margin, alpha, gate.power, gate.method)
            ev.details.update(
                b=b,
                c=c,
                discordance=(b + c) / n,
                candidate_accuracy=(n - int(wrong[i])) / n,
                baseline_accuracy=(n - int(wrong[i]) - c + b) / n,
                mcnemar_p=paired.mcnemar_exact(b, c),
                margin=gate.margin,
                baseline=gate.baseline,
                baseline_errors=int(base_errs[i]),
            )
        min_n_check(ev, gate.min_n)
        out.append(ev)
    return out
