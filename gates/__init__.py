"""Modelkeep statistical promotion gates: a pure engine (numpy/scipy/pyarrow/pyyaml only).

A gate decides PASS / FAIL / INCONCLUSIVE from exact or variance-aware one-sided bounds so that
P(PASS | the requirement is violated) <= alpha, and reports how many examples would settle an
inconclusive result. Public API::

    spec = gates.load_spec("gates.yaml")          # GateSpec (validated, digested)
    table = gates.load_table("results.parquet")   # pyarrow.Table (Parquet or CSV)
    report = gates.evaluate(spec, table, baseline_table, reveals_so_far=3)
    report.verdict, report.exit_code, report.to_dict()
    gates.report.to_markdown(report)

See docs/gates.md for the spec reference and decision rules.
"""

from gates import report
from gates.data import load_table, table_digest
from gates.engine import evaluate
from gates.errors import GateDataError, GateError, GateSpecError
from gates.report import GateReport, GateResult, GateSummary, Interval, Reveals, to_markdown
from gates.spec import GateSpec, load_spec

__all__ = [
    "GateDataError",
    "GateError",
    "GateReport",
    "GateResult",
    "GateSpec",
    "GateSpecError",
    "GateSummary",
    "Interval",
    "Reveals",
    "evaluate",
    "load_spec",
    "load_table",
    "report",
    "table_digest",
    "to_markdown",
]
