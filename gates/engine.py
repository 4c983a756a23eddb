"""Evaluate a spec against tables: run every gate, decide, apply policies, build the report.

Decision rule for fixed-sample kinds, per slice, at the gate's alpha (after adaptivity):
PASS when ``p_value <= alpha`` (the one-sided bound clears the requirement); FAIL when the
fail-side p-value, adjusted across the gate's slices (Holm by default), is ``<= alpha``;
INCONCLUSIVE otherwise or when a slice cannot decide (``min_n``, unresolved bootstrap).
Sequential gates take their stopping rule's decision. A gate PASSes when all its slices PASS
and FAILs when any FAILs. The verdict then follows :class:`gates.report.GateReport`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from gates.data import TableView
from gates.errors import GateDataError
from gates.kinds import bootstrap, paired, rates, sequential
from gates.kinds._common import Context, Evidence
from gates.report import Effective, GateReport, GateResult, GateSummary, Interval, Reveals, Status, Verdict
from gates.spec import (
    AnyGate,
    BootstrapGate,
    FailureBudgetGate,
    GateSpec,
    PairedGate,
    ProportionGate,
    SequentialGate,
)
from gates.stats.multiplicity import adjust


def _evidence(gate: AnyGate, ctx: Context) -> list[Evidence]:
    try:
        if isinstance(gate, ProportionGate | FailureBudgetGate):
            return rates.evaluate(gate, ctx)
        if isinstance(gate, PairedGate):
            return paired.evaluate(gate, ctx)
        if isinstance(gate, BootstrapGate):
            return bootstrap.evaluate(gate, ctx)
        return sequential.evaluate(gate, ctx)
    except pa.ArrowException as exc:
        # Safety net: a column shape the checks above did not anticipate is still the data's
        # problem, reported against the gate rather than as a traceback.
        raise GateDataError(f"cannot evaluate this gate on the table: {exc}", gate_id=gate.id) from exc


def _decide(gate: AnyGate, evidence: list[Evidence], alpha: float) -> tuple[list[Status], list[float | None]]:
    """Statuses and fail-side adjusted p-values for one gate's slices."""
    testable = [i for i, ev in enumerate(evidence) if ev.can_fail and ev.p_fail is not None]
    adjusted: list[float | None] = [None] * len(evidence)
    if testable and not isinstance(gate, SequentialGate):
        raw = np.array([evidence[i].p_fail for i in testable], dtype=np.float64)
        for i, p in zip(testable, adjust(raw, gate.fail_side_multiplicity).tolist(), strict=True):
            adjusted[i] = p
    statuses: list[Status] = []
    for ev, p_adj in zip(evidence, adjusted, strict=True):
        if ev.fixed_status is not None:
            statuses.append(ev.fixed_status)
        elif ev.can_pass and ev.p_pass is not None and ev.p_pass <= alpha:
            statuses.append("PASS")
        elif p_adj is not None and p_adj <= alpha:
            statuses.append("FAIL")
        else:
            statuses.append("INCONCLUSIVE")
    return statuses, adjusted


def _overall(statuses: list[Status]) -> Status:
    if "FAIL" in statuses:
        return "FAIL"
    return "PASS" if statuses and all(s == "PASS" for s in statuses) else "INCONCLUSIVE"


def evaluate(
    spec: GateSpec, candidate: pa.Table, baseline: pa.Table | None = None, *, reveals_so_far: int = 0
) -> GateReport:
    """Evaluate every gate of ``spec`` on ``candidate`` (and ``baseline`` for paired gates).

    ``reveals_so_far`` is how many earlier evaluations revealed a verdict on this test set; this
    call is reveal ``reveals_so_far + 1``. With ``adaptivity: full`` every gate's alpha is
    divided by ``2 ** reveal_budget`` (ease.ml/ci's union bound over the pass/fail histories an
    adaptive developer can observe). Raises :class:`GateDataError` for unusable tables and
    :class:`GateError` subclasses for any other expected problem; never a bare traceback.
    """
    if reveals_so_far < 0:
        raise GateDataError("reveals_so_far must be >= 0", field="reveals_so_far")
    cand = TableView(candidate, "candidate")
    base = TableView(baseline, "baseline") if baseline is not None else None
    divisor = 2.0**spec.reveal_budget if spec.adaptivity == "full" and spec.reveal_budget else 1.0
    ctx = Context(candidate=cand, baseline=base, alpha_divisor=divisor)
    used = reveals_so_far + 1
    exhausted = spec.reveal_budget is not None and used > spec.reveal_budget
    warnings: list[str] = []
    if exhausted:
        warnings.append(
            f"reveal budget exhausted: this is reveal {used} of a budget of {spec.reveal_budget}; "
            "decisions on this test set are no longer covered by the stated error rates - refresh it"
        )
    results: list[GateResult] = []
    summaries: list[GateSummary] = []
    for gate in spec.gates:
        alpha = ctx.alpha(gate)
        evidence = _evidence(gate, ctx)
        statuses, adjusted = _decide(gate, evidence, alpha)
        digest = cand.digest
        for ev, status, p_adj in zip(evidence, statuses, adjusted, strict=True):
            results.append(
                GateResult(
                    gate_id=gate.id,
                    kind=gate.kind,
                    slice=ev.slice,
                    status=status,
                    estimate=ev.estimate,
                    interval=Interval(lower=ev.lower, upper=ev.upper, level=1.0 - alpha, method=ev.method),
                    threshold=ev.threshold,
                    direction=ev.direction,
                    p_value=ev.p_pass,
                    p_value_fail=ev.p_fail,
                    p_value_fail_adjusted=p_adj,
                    n=ev.n,
                    failures=ev.failures,
                    errors=ev.errors,
                    n_needed=ev.n_needed,
                    n_needed_toward=ev.toward,
                    alpha=alpha,
                    seed=gate.seed,
                    spec_digest=spec.digest,
                    data_digest=digest,
                    notes=tuple(ev.notes),
                    details=ev.details,
                )
            )
        status = _overall(statuses)
        effective: Effective = "pass" if status == "PASS" else "fail" if status == "FAIL" else gate.on_inconclusive
        summaries.append(GateSummary(gate.id, gate.kind, status, effective, gate.on_inconclusive, len(evidence)))
        if status == "INCONCLUSIVE" and gate.on_inconclusive == "pass":
            warnings.append(f"gate {gate.id!r} is INCONCLUSIVE and passes only by on_inconclusive: pass")
    verdict: Verdict
    if any(s.effective == "fail" for s in summaries):
        verdict = "fail"
    elif any(s.effective == "warn" for s in summaries):
        verdict = "inconclusive"
    else:
        verdict = "warn" if warnings else "pass"
    return GateReport(
        verdict=verdict,
        spec_digest=spec.digest,
        data_digest=cand.digest,
        baseline_digest=base.digest if base is not None and spec.needs_baseline else None,
        reveals=Reveals(
            so_far=reveals_so_far,
            used=used,
            budget=spec.reveal_budget,
            adaptivity=spec.adaptivity,
            alpha_divisor=divisor,
            exhausted=exhausted,
        ),
        gates=tuple(summaries),
        results=tuple(results),
        warnings=tuple(warnings),
    )
