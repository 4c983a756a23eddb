"""Whatever tables and gates users throw at it, the engine answers or raises a GateError."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gates


def _column(draw: st.DrawFn, n: int) -> pa.Array:
    kind = draw(st.sampled_from(["bool", "int01", "int", "float", "str", "null", "list"]))
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    if kind == "bool":
        return pa.array(rng.random(n) < 0.8)
    if kind == "int01":
        return pa.array(rng.integers(0, 2, n))
    if kind == "int":
        return pa.array(rng.integers(0, 4, n))
    if kind == "float":
        return pa.array(rng.normal(0, 1, n))
    if kind == "str":
        return pa.array(rng.choice(["a", "b", "c", ""], n))
    if kind == "null":
        return pa.nulls(n)
    return pa.array([[1, 2]] * n)


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(1, 60))
    cols: dict[str, Any] = {"id": pa.array(np.arange(n))}
    for name in ("label", "prediction", "correct", "passed", "score", "country", "error"):
        if draw(st.booleans()):
            cols[name] = _column(draw, n)
    return pa.table(cols)


GATE = st.one_of(
    st.fixed_dictionaries({"kind": st.just("proportion"), "threshold": st.floats(0.05, 0.95)}),
    st.fixed_dictionaries({"kind": st.just("failure_budget"), "max_failure_rate": st.floats(0.01, 0.5)}),
    st.fixed_dictionaries({"kind": st.just("paired_noninferiority"), "margin": st.floats(0.0, 0.2)}),
    st.fixed_dictionaries(
        {
            "kind": st.just("bootstrap_threshold"),
            "metric": st.sampled_from(["accuracy", "f1_macro", "auc", "rmse", "mae"]),
            "threshold": st.floats(0.1, 0.9),
            "n_resamples": st.just(200),
        }
    ),
    st.fixed_dictionaries({"kind": st.just("sequential"), "p0": st.just(0.5), "p1": st.just(0.8)}),
)
EXTRAS = st.fixed_dictionaries(
    {},
    optional={
        "where": st.sampled_from(["country == 'a'", "score > 0", "label in ['a', 1]", "correct", "not passed"]),
        "slice_by": st.just(["country"]),
        "on_error": st.sampled_from(["count_as_failure", "exclude"]),
        "min_n": st.integers(1, 20),
    },
)


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(candidate=tables(), baseline=tables(), gate=GATE, extra=EXTRAS)
def test_evaluate_answers_or_raises_a_gate_error(
    candidate: pa.Table, baseline: pa.Table, gate: dict[str, Any], extra: dict[str, Any]
) -> None:
    definition = {"id": "g", **gate, **extra}
    if gate["kind"] == "sequential":
        definition.pop("slice_by", None)
        definition.pop("min_n", None)
    try:
        spec = gates.load_spec({"version": 1, "gates": [definition]})
        report = gates.evaluate(spec, candidate, baseline)
    except gates.GateError as exc:
        assert exc.message
        return
    report.to_dict()
    gates.to_markdown(report)
    assert report.verdict in {"pass", "fail", "inconclusive", "warn"}


@pytest.mark.parametrize(
    ("gate", "columns", "fragment"),
    [
        (
            {"kind": "bootstrap_threshold", "metric": "auc", "threshold": 0.7},
            {"label": [0, 1], "score": ["x", "y"]},
            "numeric 'score'",
        ),
        (
            {"kind": "bootstrap_threshold", "metric": "rmse", "threshold": 0.7},
            {"label": ["a", "b"], "prediction": [1.0, 2.0]},
            "numeric",
        ),
        (
            {"kind": "proportion", "threshold": 0.7, "slice_by": ["tags"]},
            {"correct": [True, False], "tags": [[1], [2]]},
            "cannot slice",
        ),
        (
            {"kind": "proportion", "threshold": 0.7, "where": "label in ['2024-01-01', 'x']"},
            {"correct": [True, False], "label": pa.array([1, 2], pa.date32())},
            "cannot evaluate 'in'",
        ),
    ],
)
def test_unusual_column_types_are_data_errors(gate: dict[str, Any], columns: dict[str, Any], fragment: str) -> None:
    table = pa.table({"id": [1, 2], **columns})
    with pytest.raises(gates.GateDataError, match=fragment) as info:
        gates.evaluate(gates.load_spec({"version": 1, "gates": [{"id": "g", **gate}]}), table)
    assert info.value.gate_id == "g"
