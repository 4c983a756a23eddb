"""What a gate report looks like on GitHub: the status line, the sticky comment, the check run's annotations.

Pure functions of a report (``GateReport.to_dict()``), shared by ``registry ci gate`` and the server's
``github_status`` / ``github_comment`` actions, so a PR shows the same words whoever ran the gate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from automations.github import COMMENT_MAX, DESCRIPTION_MAX, Annotation, Conclusion, State

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""A gate name: part of the status context and of the comment's hidden marker (no ``-->`` can end it early)."""
_WORD = {"pass": "PASS", "warn": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
_ICON = {"PASS": "✅", "FAIL": "❌", "INCONCLUSIVE": "⚠️"}


def verdict_word(verdict: str) -> str:
    """``pass``, ``fail`` or ``inconclusive``: "warn" (passed, with warnings) is a pass."""
    return _WORD.get(verdict, "FAIL").lower()


def context(name: str | None) -> str:
    """The status context (and check-run name): ``modelkeep/gate``, or ``modelkeep/gate/<name>``."""
    return "modelkeep/gate" if not name else f"modelkeep/gate/{name}"


def marker(key: str) -> str:
    """The hidden first line that finds this gate's comment again on the next run."""
    return f"<!-- modelkeep-gate:{key} -->"


def status_state(verdict: str, *, fail_on_inconclusive: bool = False) -> State:
    """The commit status for a verdict. INCONCLUSIVE follows the spec's ``on_inconclusive``: ``fail`` made the
    verdict "fail" already, ``pass`` made it "warn"; under ``warn`` it does not block (success, and the
    description says INCONCLUSIVE) unless ``fail_on_inconclusive``."""
    if verdict in ("pass", "warn"):
        return "success"
    if verdict == "inconclusive" and not fail_on_inconclusive:
        return "success"
    return "failure"


def check_conclusion(verdict: str, *, fail_on_inconclusive: bool = False) -> Conclusion:
    if verdict == "inconclusive" and not fail_on_inconclusive:
        return "neutral"
    return "success" if status_state(verdict, fail_on_inconclusive=fail_on_inconclusive) == "success" else "failure"


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def _claim(result: dict[str, Any]) -> str:
    """``accuracy 0.941 < 0.95 (lower bound)``: the estimate against the requirement."""
    label = result.get("label") or result["gate_id"]
    estimate, threshold = result.get("estimate"), result.get("threshold")
    if threshold is None or estimate is None:
        return f"{label} {_num(estimate)}".strip()
    sign = "<" if estimate < threshold else ">" if estimate > threshold else "="
    bound = {">=": "lower bound", "<=": "upper bound"}.get(str(result.get("direction")), "requirement")
    claim = f"{label} {_num(estimate)} {sign} {_num(threshold)} ({bound})"
    if result["status"] == "INCONCLUSIVE" and result.get("n_needed"):
        claim += f", n needed {result['n_needed']:,}"
    return claim


def description(report: dict[str, Any]) -> str:
    """One line, at most 140 characters: ``FAIL: accuracy 0.941 < 0.95 (lower bound)``."""
    word = _WORD.get(report["verdict"], "FAIL")
    results = report.get("results", [])
    if word == "PASS":
        passed = sum(1 for g in report.get("gates", []) if g.get("status") == "PASS")
        text = f"PASS: {passed} of {len(report.get('gates', []))} gates passed"
        if report.get("warnings"):
            text += f" ({len(report['warnings'])} warning{'s' if len(report['warnings']) != 1 else ''})"
        return text[:DESCRIPTION_MAX]
    focus = [r for r in results if r["status"] == "FAIL"] or [r for r in results if r["status"] == "INCONCLUSIVE"]
    if not focus:
        return word
    text = f"{word}: {_claim(focus[0])}"
    if word == "FAIL" and focus[0]["status"] == "INCONCLUSIVE":
        text = f"FAIL: INCONCLUSIVE {_claim(focus[0])} (on_inconclusive: fail)"
    if len(focus) > 1:
        text += f"; +{len(focus) - 1} more"
    return text if len(text) <= DESCRIPTION_MAX else text[: DESCRIPTION_MAX - 1] + "…"


@dataclass(frozen=True, slots=True)
class Context:
    """What the report is about and where to read more, for the comment and the summary."""

    name: str | None
    candidate: str
    """``churn v3``, or the candidate file offline."""
    baseline: str | None = None
    gate_run_id: int | None = None
    gate_run_url: str | None = None
    run_url: str | None = None
    """The workflow run (target of the status)."""
    commit: str | None = None


def markdown(report: dict[str, Any], ctx: Context) -> str:
    """The report as GitHub-flavoured Markdown: heading with the verdict, the status line, the gates' table
    (gate, status, estimate, interval, requirement, n needed ...), what was compared, and links."""
    from gates.report import report_from_dict, to_markdown

    word = _WORD.get(report["verdict"], "FAIL")
    title = "Modelkeep gate" + (f" `{ctx.name}`" if ctx.name else "")
    table = to_markdown(report_from_dict(report)).splitlines()
    if table and table[0].startswith("### "):
        table = table[1:]  # its own heading; ours names the gate
    lines = [f"### {_ICON[word]} {title}: {word}", "", f"> {description(report)}", *table]
    facts = [f"**Candidate:** {ctx.candidate}"]
    if ctx.baseline:
        facts.append(f"**Baseline:** {ctx.baseline}")
    if ctx.gate_run_id is not None:
        run = f"gate run #{ctx.gate_run_id}"
        facts.append(f"**Recorded:** [{run}]({ctx.gate_run_url})" if ctx.gate_run_url else f"**Recorded:** {run}")
    links = []
    if ctx.run_url:
        links.append(f"[workflow run]({ctx.run_url})")
    if ctx.commit:
        links.append(f"commit `{ctx.commit[:12]}`")
    lines += ["", " · ".join(facts)]
    if links:
        lines += ["", " · ".join(links)]
    return "\n".join(lines) + "\n"


def comment(report: dict[str, Any], ctx: Context, *, key: str) -> str:
    """The sticky comment: ``marker(key)`` first, then :func:`markdown`, cut to GitHub's 65,536 characters."""
    body = f"{marker(key)}\n{markdown(report, ctx)}"
    if len(body) <= COMMENT_MAX:
        return body
    note = "\n\n…cut to fit a comment: the job summary has the whole report.\n"
    return body[: COMMENT_MAX - len(note)] + note


def annotations_for(report: dict[str, Any], *, spec_path: str | None, spec_text: str | None) -> list[Annotation]:
    """Check-run annotations on the spec's line for each gate that did not pass (failure or warning)."""
    if not spec_path or spec_text is None:
        return []
    found: list[Annotation] = []
    for result in report.get("results", []):
        if result["status"] == "PASS":
            continue
        level: Literal["failure", "warning"] = (
            "failure" if result["status"] == "FAIL" or report["verdict"] == "fail" else "warning"
        )
        found.append(
            Annotation(
                path=spec_path,
                line=_line_of(spec_text, result["gate_id"]),
                level=level,
                title=f"{result['status']}: {result.get('label') or result['gate_id']}",
                message=_claim(result),
            )
        )
    return found


def _line_of(text: str, gate_id: str) -> int:
    """The 1-based line declaring ``id: <gate_id>`` (block or flow style), else 1."""
    pattern = re.compile(r"""\bid:\s*["']?""" + re.escape(gate_id) + r"""["']?\s*(,|}|$|#)""")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line):
            return number
    return 1
