"""``sequential``: decide as labels arrive without inflating the error rate by re-checking.

The table is read as a stream in row order (or ``order_by``), truncated at ``max_n``; the
procedure stops at its first boundary crossing, so once a run has decided, every later run on a
longer prefix of the same stream reports the same decision. Until then the gate is INCONCLUSIVE
("continue") with the expected number of further labels.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow.compute as pc
from numpy.typing import NDArray

from gates.errors import GateDataError
from gates.kinds._common import Context, Evidence, outcome_with_errors, select
from gates.spec import SequentialGate
from gates.stats import sequential


def evaluate(gate: SequentialGate, ctx: Context) -> list[Evidence]:
    """One piece of evidence: the stopping decision along the stream."""
    view = ctx.candidate
    sel = select(gate, view)
    values = outcome_with_errors(gate, view, gate.outcome, sel, failure_value=False)
    order: NDArray[np.int64] | slice = slice(None)  # arrival order = row order unless order_by
    if gate.order_by is not None:
        col = view.column(gate.order_by, gate_id=gate.id, field="order_by")
        if col.null_count:
            raise GateDataError(f"order_by column {gate.order_by!r} has nulls", gate_id=gate.id, field="order_by")
        order = np.asarray(pc.sort_indices(col).to_numpy(zero_copy_only=False), dtype=np.int64)
    in_stream = sel.mask[order]
    stream = values[order][in_stream]
    errored_stream = sel.errored[order][in_stream]
    available = stream.size
    if gate.max_n is not None:
        stream = stream[: gate.max_n]
    alpha = ctx.alpha(gate)
    if gate.method == "sprt":
        assert gate.p0 is not None and gate.p1 is not None  # validated by the spec
        path = sequential.sprt_path(stream, gate.p0, gate.p1, alpha, gate.beta, gate.boundaries)
        threshold = gate.p0
        method = f"sprt ({gate.boundaries} boundaries)"
    else:
        assert gate.threshold is not None  # validated by the spec
        path = sequential.cs_path(stream, gate.threshold, alpha)
        threshold = gate.threshold
        method = "beta-binomial confidence sequence"
    n, k = path.n_used, path.k_used
    lower, upper = sequential.cs_bounds(k, n, alpha)
    ev = Evidence(
        slice=None,
        estimate=k / n if n else None,
        lower=lower,
        upper=upper,
        method="beta-binomial confidence sequence (anytime-valid)",
        threshold=threshold,
        direction=">=",
        p_pass=path.p_greater,
        p_fail=path.p_less,
        n=n,
        failures=n - k,
        # Excluded errors never enter the stream, so report all of them; counted ones up to the stop.
        errors=int(np.count_nonzero(errored_stream[:n] if gate.on_error == "count_as_failure" else sel.errored)),
        fixed_status=None if path.status == "CONTINUE" else path.status,
    )
    ev.details.update(
        method=method,
        statistic=path.statistic,
        upper_boundary=path.upper_boundary,
        lower_boundary=path.lower_boundary,
        n_available=available,
        max_n=gate.max_n,
        stopped=path.status != "CONTINUE",
    )
    if gate.method == "sprt":
        ev.details.update(p0=gate.p0, p1=gate.p1, beta=gate.beta)
    if path.status != "CONTINUE":
        ev.n_needed, ev.toward = n, path.status.lower()
        if n < available:
            ev.notes.append(f"decided after {n} of {available} rows; later rows do not change the decision")
        return [ev]
    # Undecided: only the stopping rule may decide a sequential gate, never a p-value comparison.
    ev.can_pass = ev.can_fail = False
    if gate.max_n is not None and available >= gate.max_n:
        ev.notes.append(f"max_n = {gate.max_n} reached without crossing a boundary")
    else:
        ev.notes.append("no boundary crossed yet: continue collecting labels")
    if gate.method == "sprt" and n:
        assert gate.p0 is not None and gate.p1 is not None
        rate = k / n
        drift = 0.0
        if 0.0 < rate:
            drift += rate * math.log(gate.p1 / gate.p0)
        if rate < 1.0:
            drift += (1 - rate) * math.log((1 - gate.p1) / (1 - gate.p0))
        more = sequential.asn_remaining(path.statistic, path.upper_boundary, path.lower_boundary, drift)
        if more is not None:
            ev.n_needed = n + math.ceil(more)
            ev.toward = "pass" if drift > 0 else "fail"
            ev.details["plan_method"] = "wald_asn"
    return [ev]
