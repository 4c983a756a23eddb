"""Why a version was trusted: a gate run's report (each gate's estimate and interval drawn against its
threshold), and a drift check with its Evidently report embedded in a sandboxed frame."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get
from litestar.response import Stream, Template

from monitoring import checks, report
from registry.api.v1._common import int64_or_none
from registry.db import Database
from registry.errors import NotFound
from registry.services import gates
from registry.settings import Settings
from registry.storage import BlobStore
from registry.ui import sessions
from registry.ui._render import page

WIDTH = 320
"""The evidence drawing's width in SVG units (it scales with the column)."""
PAD = 12
DRAWN_CSP = report.CONTENT_SECURITY_POLICY.replace("frame-ancestors 'none'", "frame-ancestors 'self'")
"""The report's own policy (its inline scripts run but reach nothing, in a sandbox with an origin of its own),
except that the UI's pages, and only they, may frame it."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """One gate result placed on a number line for drawing: positions in SVG units, None when absent."""

    estimate: float | None
    lower: float | None
    upper: float | None
    threshold: float | None
    lo_open: bool
    """The interval has no lower bound (drawn to the edge with an arrow)."""
    hi_open: bool
    low: float
    high: float
    """The values at the line's two ends."""


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def place(result: dict[str, Any]) -> Evidence | None:
    """Where a result's estimate, interval and threshold fall on a line ``WIDTH`` wide. None when there is
    nothing to draw (no estimate and no interval)."""
    interval = result.get("interval") or {}
    estimate, threshold = _finite(result.get("estimate")), _finite(result.get("threshold"))
    lower, upper = _finite(interval.get("lower")), _finite(interval.get("upper"))
    known = [v for v in (estimate, threshold, lower, upper) if v is not None]
    if estimate is None and lower is None and upper is None:
        return None
    low, high = min(known), max(known)
    span = high - low
    if span <= 0:
        span = abs(high) or 1.0
    # Margins so that nothing sits on the edge, and open sides have room for their arrow.
    low, high = low - 0.15 * span, high + 0.15 * span

    def x(value: float | None) -> float | None:
        if value is None:
            return None
        return round(PAD + (value - low) / (high - low) * (WIDTH - 2 * PAD), 2)

    return Evidence(
        estimate=x(estimate),
        lower=x(lower) if lower is not None else float(PAD) / 2,
        upper=x(upper) if upper is not None else WIDTH - float(PAD) / 2,
        threshold=x(threshold),
        lo_open=lower is None,
        hi_open=upper is None,
        low=low,
        high=high,
    )


def number(value: Any, digits: int = 4) -> str:
    """A report number for people: fixed digits, scientific when tiny or huge, a dash when absent."""
    found = _finite(value)
    if found is None:
        return "—"
    if found != 0 and (abs(found) < 1e-3 or abs(found) >= 1e6):
        return f"{found:.2e}"
    return f"{found:.{digits}f}"


def verdict_class(value: str) -> str:
    return {"pass": "ok", "warn": "warn", "inconclusive": "warn", "fail": "bad"}.get(value.lower(), "")


def _check_id(value: int, what: str) -> int:
    if int64_or_none(value) is None or value < 1:
        raise NotFound(f"{what} {value} does not exist")
    return value


class EvidencePages(Controller):
    path = "/ui"
    guards = [sessions.signed_in]
    include_in_schema = False

    @get("/gate-runs/{run_id:int}")
    async def gate_run(self, request: Request[Any, Any, Any], run_id: int, db: Database) -> Template:
        """A recorded gate run: the verdict, each gate's summary, and each result with its evidence drawn."""
        async with db.read() as session:
            model, run = await gates.get_run(session, run_id=_check_id(run_id, "gate run"))
        found = run.report or {}
        results = [(r, place(r)) for r in found.get("results", [])]
        return page(
            request,
            "gate_run.html",
            model=model,
            run=run,
            report=found,
            results=results,
            width=WIDTH,
            number=number,
            verdict_class=verdict_class,
        )

    @get("/models/{name:str}/drift/{check_id:int}")
    async def drift_check(self, request: Request[Any, Any, Any], name: str, check_id: int, db: Database) -> Template:
        """A drift check: its window and per-column verdicts, and (when rows were sampled) the Evidently report
        in a sandboxed frame."""
        async with db.read() as session:
            model, check = await checks.get_check(
                session, model_name=name, check_id=_check_id(check_id, f"{name} monitor check")
            )
        return page(
            request,
            "drift_check.html",
            model=model,
            check=check,
            result=check.result or {},
            number=number,
        )

    @get("/models/{name:str}/drift/{check_id:int}/report")
    async def drift_report(
        self, name: str, check_id: int, db: Database, store: BlobStore, settings: Settings
    ) -> Stream:
        """The check's Evidently report for the frame on the check's page (built on first request)."""
        built = await report.html_report(
            db,
            store,
            model_name=name,
            check_id=_check_id(check_id, f"{name} monitor check"),
            tmp_dir=settings.tmp_dir,
        )
        headers = {
            **report.HEADERS,
            "content-security-policy": DRAWN_CSP,
            # Like every page, not kept by the browser after signing out (the API's copy may be cached).
            "cache-control": "no-store",
            "content-length": str(built.size),
            "etag": f'"{built.digest}"',
        }
        return Stream(store.stream(built.digest), media_type="text/html; charset=utf-8", headers=headers)
