"""Gate results, the overall report, and their JSON and Markdown renderings.

``GateReport.to_dict()`` is the stable machine contract (the registry stores it and the CLI
renders rich tables from it); keys are never removed, only added. Floats that are not finite are
written as ``null`` so the dict is strict JSON. :func:`to_markdown` renders the GitHub-flavoured
verdict table for a pull-request comment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["PASS", "FAIL", "INCONCLUSIVE"]
Verdict = Literal["pass", "fail", "inconclusive", "warn"]
Effective = Literal["pass", "fail", "warn"]

EXIT_CODES: Mapping[Verdict, int] = {"pass": 0, "warn": 0, "fail": 1, "inconclusive": 3}


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _json_value(x: Any) -> Any:
    """Slice values come from table columns: keep JSON scalars, write anything else (dates,
    decimals, bytes) as its string form."""
    if x is None or isinstance(x, bool | int | str):
        return x
    if isinstance(x, float):
        return _num(x)
    return str(x)


@dataclass(frozen=True)
class Interval:
    """Bounds on the estimate: each side is one-sided at ``level`` (= 1 - alpha used)."""

    lower: float | None
    upper: float | None
    level: float
    method: str
    sided: str = "one-sided each"

    def to_dict(self) -> dict[str, Any]:
        return {
            "lower": _num(self.lower),
            "upper": _num(self.upper),
            "level": self.level,
            "sided": self.sided,
            "method": self.method,
        }


@dataclass(frozen=True)
class GateResult:
    """The decision for one gate, or one slice of a sliced gate.

    ``p_value`` tests H0 "the requirement is violated" (PASS when <= alpha); ``p_value_fail``
    tests H0 "the requirement holds" and ``p_value_fail_adjusted`` is it after the fail-side
    multiplicity adjustment across the gate's slices (FAIL when <= alpha). ``n_needed`` is the
    total sample size an exact plan would need, with power ``power``, if the observed effect were
    the truth, in the direction ``n_needed_toward`` ("pass" or "fail").
    """

    gate_id: str
    kind: str
    slice: Mapping[str, Any] | None
    status: Status
    estimate: float | None
    interval: Interval
    threshold: float | None
    direction: str | None
    p_value: float | None
    p_value_fail: float | None
    p_value_fail_adjusted: float | None
    n: int
    failures: int | None
    errors: int
    n_needed: int | None
    n_needed_toward: str | None
    alpha: float
    seed: int
    spec_digest: str
    data_digest: str
    notes: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``gate_id`` plus the slice values, e.g. ``per-country[country=DE]``."""
        if not self.slice:
            return self.gate_id
        return f"{self.gate_id}[{', '.join(f'{k}={v}' for k, v in self.slice.items())}]"

    @property
    def n_additional(self) -> int | None:
        """Examples beyond ``n`` the plan asks for (0 when ``n`` already suffices)."""
        return None if self.n_needed is None else max(0, self.n_needed - self.n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate_id": self.gate_id,
            "label": self.label,
            "kind": self.kind,
            "slice": {k: _json_value(v) for k, v in self.slice.items()} if self.slice else None,
            "status": self.status,
            "estimate": _num(self.estimate),
            "interval": self.interval.to_dict(),
            "threshold": self.threshold,
            "direction": self.direction,
            "p_value": _num(self.p_value),
            "p_value_fail": _num(self.p_value_fail),
            "p_value_fail_adjusted": _num(self.p_value_fail_adjusted),
            "n": self.n,
            "failures": self.failures,
            "errors": self.errors,
            "n_needed": self.n_needed,
            "n_needed_toward": self.n_needed_toward,
            "n_additional": self.n_additional,
            "alpha": self.alpha,
            "seed": self.seed,
            "spec_digest": self.spec_digest,
            "data_digest": self.data_digest,
            "notes": list(self.notes),
            "details": {k: (_num(v) if isinstance(v, float) else v) for k, v in self.details.items()},
        }


@dataclass(frozen=True)
class GateSummary:
    """One gate across its slices: ``status`` is FAIL if any slice FAILs, PASS if all PASS,
    otherwise INCONCLUSIVE; ``effective`` is what counts toward the verdict after the
    ``on_inconclusive`` policy."""

    gate_id: str
    kind: str
    status: Status
    effective: Effective
    on_inconclusive: str
    slices: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate_id": self.gate_id,
            "kind": self.kind,
            "status": self.status,
            "effective": self.effective,
            "on_inconclusive": self.on_inconclusive,
            "slices": self.slices,
        }


@dataclass(frozen=True)
class Reveals:
    """Test-set reuse accounting (ease.ml/ci): this evaluation is reveal number ``used``."""

    so_far: int
    used: int
    budget: int | None
    adaptivity: str
    alpha_divisor: float
    exhausted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "so_far": self.so_far,
            "used": self.used,
            "budget": self.budget,
            "adaptivity": self.adaptivity,
            "alpha_divisor": self.alpha_divisor,
            "exhausted": self.exhausted,
        }


@dataclass(frozen=True)
class GateReport:
    """The outcome of :func:`gates.evaluate`.

    ``verdict``: "fail" if any gate FAILs or is INCONCLUSIVE under ``on_inconclusive: fail``;
    otherwise "inconclusive" if any gate is INCONCLUSIVE under ``warn``; otherwise "warn" if
    there are warnings (an INCONCLUSIVE passed by policy, an exhausted reveal budget); else
    "pass". ``exit_code``: 0 pass/warn, 1 fail, 3 inconclusive (2 is the CLI's, for errors).
    """

    verdict: Verdict
    spec_digest: str
    data_digest: str
    baseline_digest: str | None
    reveals: Reveals
    gates: tuple[GateSummary, ...]
    results: tuple[GateResult, ...]
    warnings: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form with stable keys (see module docstring)."""
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "spec_digest": self.spec_digest,
            "data_digest": self.data_digest,
            "baseline_digest": self.baseline_digest,
            "reveals": self.reveals.to_dict(),
            "warnings": list(self.warnings),
            "gates": [g.to_dict() for g in self.gates],
            "results": [r.to_dict() for r in self.results],
        }


_ICONS = {"PASS": "✅ PASS", "FAIL": "❌ FAIL", "INCONCLUSIVE": "⚠️ INCONCLUSIVE"}


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: GateReport) -> str:
    """GitHub-flavoured Markdown: verdict line, one table row per gate/slice, notes, digests."""
    lines = [
        f"### Model gates: **{report.verdict.upper()}**",
        "",
        "| Gate | Status | Estimate | Interval | Requirement | p (violated) | n | Failures | Errors | n needed |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report.results:
        lo, hi = r.interval.lower, r.interval.upper
        interval = f"[{_fmt(lo)}, {_fmt(hi)}] {r.interval.level:.0%} x2 {r.interval.method}"
        need = "-" if r.n_needed is None else f"{r.n_needed:,} ({r.n_needed_toward})"
        requirement = "-" if r.threshold is None else f"{r.direction or ''} {_fmt(r.threshold)}".strip()
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    f"`{r.label}`",
                    _ICONS[r.status],
                    _fmt(r.estimate),
                    interval,
                    requirement,
                    _fmt(r.p_value),
                    f"{r.n:,}",
                    "-" if r.failures is None else f"{r.failures:,}",
                    f"{r.errors:,}",
                    need,
                )
            )
            + " |"
        )
    notes = [f"- `{r.label}`: {n}" for r in report.results for n in r.notes]
    if report.warnings or notes:
        lines += ["", *(f"- ⚠️ {w}" for w in report.warnings), *notes]
    budget = "∞" if report.reveals.budget is None else str(report.reveals.budget)
    lines += [
        "",
        f"<sub>spec `{report.spec_digest[:12]}` · data `{report.data_digest[:12]}`"
        + (f" · baseline `{report.baseline_digest[:12]}`" if report.baseline_digest else "")
        + f" · reveal {report.reveals.used}/{budget} ({report.reveals.adaptivity})"
        + " · intervals: one-sided bounds at the level shown, each side</sub>",
    ]
    return "\n".join(lines) + "\n"


def report_from_dict(data: Mapping[str, Any]) -> GateReport:
    """Rebuild a report from :meth:`GateReport.to_dict` output (e.g. a stored gate run), for rendering."""
    results = tuple(
        GateResult(
            gate_id=r["gate_id"],
            kind=r["kind"],
            slice=r.get("slice"),
            status=r["status"],
            estimate=r.get("estimate"),
            interval=Interval(
                lower=r["interval"].get("lower"),
                upper=r["interval"].get("upper"),
                level=r["interval"]["level"],
                method=r["interval"]["method"],
                sided=r["interval"].get("sided", "one-sided each"),
            ),
            threshold=r.get("threshold"),
            direction=r.get("direction"),
            p_value=r.get("p_value"),
            p_value_fail=r.get("p_value_fail"),
            p_value_fail_adjusted=r.get("p_value_fail_adjusted"),
            n=r["n"],
            failures=r.get("failures"),
            errors=r.get("errors", 0),
            n_needed=r.get("n_needed"),
            n_needed_toward=r.get("n_needed_toward"),
            alpha=r["alpha"],
            seed=r.get("seed"),
            spec_digest=r["spec_digest"],
            data_digest=r["data_digest"],
            notes=tuple(r.get("notes", ())),
            details=r.get("details", {}),
        )
        for r in data["results"]
    )
    summaries = tuple(
        GateSummary(g["gate_id"], g["kind"], g["status"], g["effective"], g["on_inconclusive"], g["slices"])
        for g in data["gates"]
    )
    rv = data["reveals"]
    reveals = Reveals(
        so_far=rv["so_far"],
        used=rv["used"],
        budget=rv.get("budget"),
        adaptivity=rv["adaptivity"],
        alpha_divisor=rv["alpha_divisor"],
        exhausted=rv["exhausted"],
    )
    return GateReport(
        verdict=data["verdict"],
        spec_digest=data["spec_digest"],
        data_digest=data["data_digest"],
        baseline_digest=data.get("baseline_digest"),
        reveals=reveals,
        gates=summaries,
        results=results,
        warnings=tuple(data.get("warnings", ())),
    )
