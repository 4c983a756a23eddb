"""``proportion`` and its mirror ``failure_budget``: exact (or Wilson) one-sided bounds on a rate.

A proportion gate reads a 0/1 outcome and requires its rate ``>=`` (success rate) or ``<=``
(error rate) ``threshold``. A failure budget reads a pass/fail outcome and requires the failure
rate ``<= max_failure_rate``: it is the proportion gate on ``not outcome`` with direction ``<=``.
An errored row counted as a failure takes the unfavourable value in either case.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from gates.kinds._common import Context, Evidence, min_n_check, outcome_with_errors, select
from gates.spec import FailureBudgetGate, ProportionGate
from gates.stats import binomial


def evaluate(gate: ProportionGate | FailureBudgetGate, ctx: Context) -> list[Evidence]:
    """Per-slice evidence for a proportion or failure-budget gate."""
    view = ctx.candidate
    sel = select(gate, view)
    if isinstance(gate, FailureBudgetGate):
        passed = outcome_with_errors(gate, view, gate.outcome, sel, failure_value=False)
        direction: Literal[">=", "<="] = "<="
        events, threshold = ~passed, gate.max_failure_rate
    else:
        unfavourable = gate.direction == "<="
        events = outcome_with_errors(gate, view, gate.outcome, sel, failure_value=unfavourable)
        threshold, direction = gate.threshold, gate.direction
    alpha = ctx.alpha(gate)
    ks = sel.count(events)
    ns = sel.count(np.ones(view.n, dtype=np.bool_))
    errs = sel.errors()
    out: list[Evidence] = []
    for i, label in enumerate(sel.labels):
        k, n = int(ks[i]), int(ns[i])
        failures = (n - k) if direction == ">=" else k
        if n == 0:
            ev = Evidence(label, None, None, None, gate.method, threshold, direction, None, None, 0, 0, int(errs[i]))
        else:
            b = binomial.rate_bounds(k, n, threshold, alpha, gate.method)
            p_pass, p_fail = (b.p_greater, b.p_less) if direction == ">=" else (b.p_less, b.p_greater)
            ev = Evidence(
                label, b.estimate, b.lower, b.upper, gate.method, threshold, direction,
                p_pass, p_fail, n, failures, int(errs[i]),
            )  # fmt: skip
            ev.n_needed, ev.toward, how = binomial.plan(
                b.estimate, threshold, direction, alpha, gate.power, gate.method
            )
            ev.details["plan_method"] = how
        min_n_check(ev, gate.min_n)
        out.append(ev)
    return out
