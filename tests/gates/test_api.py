"""The public surface of ``gates`` and its dependency boundary."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import gates

GATES = Path(gates.__file__).resolve().parent
ALLOWED_THIRD_PARTY = {"numpy", "scipy", "pyarrow", "yaml"}


def test_gates_imports_only_the_stdlib_numpy_scipy_pyarrow_and_yaml() -> None:
    """A pure engine: nothing of registry/automations/monitoring, no web or database libraries."""
    bad = []
    for path in sorted(GATES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in ALLOWED_THIRD_PARTY | {"gates", "__future__"} and top not in sys.stdlib_module_names:
                    bad.append(f"{path.relative_to(GATES)}: {name}")
    assert bad == []


def test_no_eval_or_exec_in_the_engine() -> None:
    for path in GATES.rglob("*.py"):
        tree = ast.parse(path.read_text())
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert not calls & {"eval", "exec", "compile", "__import__"}, path


def test_modules_stay_small() -> None:
    """House style: modules aim at <= 400 lines."""
    sizes = {str(p.relative_to(GATES)): len(p.read_text().splitlines()) for p in GATES.rglob("*.py")}
    assert max(sizes.values()) <= 400, sizes


def test_public_api_signatures() -> None:
    assert set(gates.__all__) >= {
        "load_spec", "load_table", "evaluate", "GateSpec", "GateReport", "GateResult",
        "GateError", "GateSpecError", "GateDataError", "to_markdown",
    }  # fmt: skip
    sig = inspect.signature(gates.evaluate)
    assert list(sig.parameters) == ["spec", "candidate", "baseline", "reveals_so_far"]
    assert sig.parameters["reveals_so_far"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["baseline"].default is None
    assert list(inspect.signature(gates.load_table).parameters) == ["source", "format"]
    assert gates.report.to_markdown is gates.to_markdown
    assert issubclass(gates.GateSpecError, gates.GateError) and issubclass(gates.GateDataError, gates.GateError)


def test_error_attributes_and_message() -> None:
    err = gates.GateSpecError("must be a number", gate_id="acc", field="threshold")
    assert (err.gate_id, err.field, err.message) == ("acc", "threshold", "must be a number")
    assert str(err) == "gate 'acc', field 'threshold': must be a number"
    assert str(gates.GateDataError("no rows")) == "no rows"


def test_a_bare_filename_that_is_not_yaml_gets_a_hint() -> None:
    with pytest.raises(gates.GateSpecError, match="file path must end in"):
        gates.load_spec("gates.txt")


def test_undefined_metric_is_inconclusive_not_a_crash() -> None:
    table = pa.table({"id": np.arange(50), "label": [1] * 50, "score": np.linspace(0, 1, 50)})
    spec = gates.load_spec(
        {"version": 1, "gates": [{"id": "auc", "kind": "bootstrap_threshold", "metric": "auc", "threshold": 0.7}]}
    )
    r = gates.evaluate(spec, table).results[0]
    assert r.status == "INCONCLUSIVE" and "undefined" in r.notes[0] and r.to_dict()["estimate"] is None
