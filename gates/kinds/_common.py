"""Shared pieces of the kind evaluators: the evidence record, the evaluation context, and row
selection (``where``, error policy, slices)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gates.data import BoolArray, TableView
from gates.errors import GateDataError
from gates.report import Status
from gates.spec import AnyGate


@dataclass
class Evidence:
    """What one gate (or one slice) observed, before the decision.

    ``p_pass`` tests H0 "requirement violated", ``p_fail`` H0 "requirement holds".
    ``can_pass``/``can_fail`` are False when the evidence must not decide that way whatever the
    p-value says (too few rows, an unresolved bootstrap bound). ``fixed_status`` is set by
    sequential gates, whose decision is the stopping rule's, not a p-value comparison.
    """

    slice: dict[str, Any] | None
    estimate: float | None
    lower: float | None
    upper: float | None
    method: str
    threshold: float | None
    direction: str | None
    p_pass: float | None
    p_fail: float | None
    n: int
    failures: int | None
    errors: int
    n_needed: int | None = None
    toward: str | None = None
    can_pass: bool = True
    can_fail: bool = True
    fixed_status: Status | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """Everything a kind evaluator reads: the tables and the alpha in force after adaptivity."""

    candidate: TableView
    baseline: TableView | None
    alpha_divisor: float
    cache: dict[str, Any] = field(default_factory=dict)

    def alpha(self, gate: AnyGate) -> float:
        return gate.alpha / self.alpha_divisor


@dataclass(frozen=True)
class Selection:
    """Rows a gate evaluates, grouped into slices.

    ``mask``: rows in the ``where`` and not excluded; ``codes``: slice index per row (0 when
    unsliced); ``labels``: each slice's column values (``[None]`` when unsliced); ``errored``:
    rows in the ``where`` whose evaluation errored (counted whatever the policy).
    """

    mask: BoolArray
    codes: NDArray[np.int64]
    labels: list[dict[str, Any] | None]
    errored: BoolArray

    def count(self, rows: BoolArray) -> NDArray[np.int64]:
        """Per-slice number of selected rows among ``rows``."""
        if len(self.labels) == 1:
            return np.array([np.count_nonzero(rows & self.mask)], dtype=np.int64)
        picked = self.codes[rows & self.mask]
        return np.bincount(picked, minlength=len(self.labels)).astype(np.int64)

    def errors(self) -> NDArray[np.int64]:
        return np.bincount(self.codes[self.errored], minlength=len(self.labels)).astype(np.int64)


def select(gate: AnyGate, view: TableView) -> Selection:
    """Apply ``where``, the ``on_error`` policy's exclusions and ``slice_by`` to ``view``."""
    inside = view.where(gate.where_ast, gate.where, gate_id=gate.id)
    errored = view.errored() & inside
    mask = inside & ~errored if gate.on_error == "exclude" else inside
    if gate.slice_by:
        codes, all_labels = view.groups(gate.slice_by, gate_id=gate.id)
        # Report only slices with rows inside the ``where``; a slice emptied by exclusions stays.
        present = np.flatnonzero(np.bincount(codes[inside], minlength=len(all_labels)))
        remap = np.full(len(all_labels), -1, dtype=np.int64)
        remap[present] = np.arange(present.size)
        codes = np.where(inside, remap[codes], 0)
        labels: list[dict[str, Any] | None] = [all_labels[i] for i in present.tolist()]
    else:
        codes = np.zeros(view.n, dtype=np.int64)
        labels = [None]
    return Selection(mask=mask, codes=codes, labels=labels, errored=errored)


def outcome_with_errors(
    gate: AnyGate, view: TableView, column: str, sel: Selection, *, failure_value: bool
) -> BoolArray:
    """The outcome column with errored rows set to ``failure_value`` (``count_as_failure``);
    raises if a selected, non-errored row has a null outcome."""
    values, valid = view.outcome(column, gate_id=gate.id)
    nulls = int(np.count_nonzero(sel.mask & ~valid & ~sel.errored))
    if nulls:
        raise GateDataError(
            f"{nulls} selected rows of the {view.role} table have a null {column!r} and no error; "
            "fill them, or mark the rows in the 'error' column",
            gate_id=gate.id,
            field="outcome",
        )
    if gate.on_error == "count_as_failure" and sel.errored.any():
        values = values.copy()
        values[sel.errored] = failure_value
    return values


def min_n_check(ev: Evidence, min_n: int) -> None:
    """Too few rows to decide: keep the statistics, forbid both decisions, say why."""
    if ev.n == 0:
        ev.can_pass = ev.can_fail = False
        ev.notes.append("no rows to evaluate")
    elif ev.n < min_n:
        ev.can_pass = ev.can_fail = False
        ev.notes.append(f"n = {ev.n} is below min_n = {min_n}: not decided")
