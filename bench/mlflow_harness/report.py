# ruff: noqa: RUF001
"""Markdown report for the MLflow comparison."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .httpload import PhaseResult

TPUT_TARGET = 5.0
P99_TARGET = 1 / 3
CPU_TARGET = 1 / 5
"""Server CPU per request, Modelkeep ÷ MLflow (the write-path issue's target, with p99 ≤ ⅓ at c ≥ 8)."""


@dataclass
class BackendRun:
    backend: str  # "sqlite" | "postgres"
    labels: dict[str, str] = field(default_factory=dict)  # workload -> label
    # results[workload][server][concurrency]
    results: dict[str, dict[str, dict[int, PhaseResult]]] = field(default_factory=dict)
    problems: dict[str, dict[str, str]] = field(default_factory=dict)  # server -> workload -> exact exchange
    seed_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    loadavg_start: tuple[float, float, float] | None = None
    loadavg_end: tuple[float, float, float] | None = None
    rss_mb: dict[str, float | None] = field(default_factory=dict)

    def put(self, workload: str, server: str, res: PhaseResult) -> None:
        self.results.setdefault(workload, {}).setdefault(server, {})[res.concurrency] = res


def _f(x: float | None, nd: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def _cpu_ms(res: PhaseResult | None) -> str:
    if res is None or res.server_cpu_s is None or res.ok == 0:
        return "–"
    return _f(1000 * res.server_cpu_s / res.ok, 2)


def cpu_ratio(ml: PhaseResult | None, mk: PhaseResult | None) -> float | None:
    if ml is None or mk is None or not ml.ok or not mk.ok or not ml.server_cpu_s or mk.server_cpu_s is None:
        return None
    return (mk.server_cpu_s / mk.ok) / (ml.server_cpu_s / ml.ok)


def mark(ml: PhaseResult | None, mk: PhaseResult | None) -> tuple[str, float | None, float | None]:
    if ml is None or mk is None:
        return "n/a", None, None
    if mk.ok == 0:
        return "**FAIL** (no successful requests)", None, None
    if ml.ok == 0:
        return "n/a (MLflow failed)", None, None
    tput = mk.throughput / ml.throughput
    p99 = mk.pct(99) / ml.pct(99)
    misses = []
    if tput < TPUT_TARGET:
        misses.append("tput")
    if p99 > P99_TARGET:
        misses.append("p99")
    if mk.errors:
        misses.append("errors")
    return ("PASS" if not misses else "**MISS** (" + ", ".join(misses) + ")"), tput, p99


def client_table(title: str, rows: list[tuple[str, PhaseResult]]) -> list[str]:
    out = [f"### {title}", "",
           "| target | conc | req/s | p50 ms | p99 ms | client CPU (% of one core) |",
           "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in rows:
        cpu = 100 * r.client_cpu_s / r.elapsed_s if r.elapsed_s else float("nan")
        out.append(
            f"| {name} | {r.concurrency} | {_f(r.throughput)} | {_f(r.pct(50), 2)} | {_f(r.pct(99), 2)} "
            f"| {_f(cpu, 0)} |"
        )
    return [*out, ""]


def backend_section(run: BackendRun, servers: list[str]) -> tuple[list[str], int, int]:
    out = [f"## {run.backend}", ""]
    if run.loadavg_start and run.loadavg_end:
        out.append(
            f"Load average (1/5/15 min) before: {' / '.join(f'{x:.2f}' for x in run.loadavg_start)}, "
            f"after: {' / '.join(f'{x:.2f}' for x in run.loadavg_end)}."
        )
    if run.seed_s:
        out.append("Seeding took " + ", ".join(f"{k} {v:.1f} s" for k, v in run.seed_s.items()) + ".")
    if run.rss_mb:
        out.append(
            "Server RSS after the run (process tree): "
            + ", ".join(f"{k} {_f(v, 0)} MiB" for k, v in run.rss_mb.items())
            + "."
        )
    out += [*run.notes, ""]
    out += [
        "| workload | conc | MLflow req/s | MLflow p50 / p95 / p99 ms | MLflow CPU ms/req "
        "| Modelkeep req/s | Modelkeep p50 / p95 / p99 ms | Modelkeep CPU ms/req | tput × | p99 ratio | CPU ratio "
        "| target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    passed = total = 0
    errors: list[str] = []
    for wl, by_server in run.results.items():
        concs = sorted({c for per in by_server.values() for c in per})
        for c in concs:
            ml = by_server.get("mlflow", {}).get(c)
            mk = by_server.get("modelkeep", {}).get(c)

            def cols(r: PhaseResult | None) -> list[str]:
                if r is None:
                    return ["–", "–", "–"]
                lat = f"{_f(r.pct(50), 2)} / {_f(r.pct(95), 2)} / {_f(r.pct(99), 2)}"
                tp = _f(r.throughput) + (f" ({r.errors} err)" if r.errors else "")
                return [tp, lat, _cpu_ms(r)]

            if wl == "health":
                verdict, tput, p99 = "baseline", None, None
                if ml and mk and ml.ok and mk.ok:
                    tput, p99 = mk.throughput / ml.throughput, mk.pct(99) / ml.pct(99)
            else:
                verdict, tput, p99 = mark(ml, mk)
                if ml is not None and mk is not None:
                    total += 1
                    passed += verdict == "PASS"
            label = run.labels.get(wl, wl)
            out.append(
                f"| {label} | {c} | "
                + " | ".join(cols(ml))
                + " | "
                + " | ".join(cols(mk))
                + f" | {_f(tput, 2) + '×' if tput else '–'} | {_f(p99, 3) if p99 else '–'}"
                + f" | {_f(cpu_ratio(ml, mk), 3)} | {verdict} |"
            )
            for server, r in (("mlflow", ml), ("modelkeep", mk)):
                if r is not None and r.error_samples:
                    errors.append(f"- {server} {wl} c={c}: {r.errors} errors, e.g. `{r.error_samples[0]}`")
    out.append("")
    noisy = [
        f"{wl} c={c} {srv} {r.other_cpu_cores:.2f}"
        for wl, by_server in run.results.items()
        for srv, per in by_server.items()
        for c, r in sorted(per.items())
        if r.other_cpu_cores is not None and r.other_cpu_cores > 0.25
    ]
    if noisy:
        out += [
            "Phases during which other processes on the machine used more than a quarter of a core on average "
            "(cores): " + "; ".join(noisy) + ".",
            "",
        ]
    if errors:
        out += ["Errors during timed phases (first sample each):", "", *errors, ""]
    probs = [(s, w, p) for s, per in run.problems.items() for w, p in per.items()]
    if probs:
        out += ["Wrong status or response shape (one untimed request before the phases; exact exchange):", ""]
        out += [f"- **{s}** `{w}`: `{p}`" for s, w, p in probs]
        out.append("")
    return out, passed, total


def render(
    meta: dict[str, Any], ceiling: list[tuple[str, PhaseResult]], runs: list[BackendRun], servers: list[str]
) -> str:
    lines = ["# MLflow-compatible API: Modelkeep vs MLflow's own server", ""]
    lines += [f"Generated by `{meta['command']}` on {meta['date']}.", ""]
    lines += [
        "Targets (DESIGN.md §6): Modelkeep throughput ≥ 5× MLflow's and p99 latency ≤ ⅓ of MLflow's, "
        "for every workload at every concurrency, on SQLite and on PostgreSQL. `tput ×` = Modelkeep req/s ÷ "
        "MLflow req/s; `p99 ratio` = Modelkeep p99 ÷ MLflow p99. CPU ms/req = CPU time of the server's "
        "whole process tree during the phase ÷ successful requests; `CPU ratio` = Modelkeep's CPU ms/req ÷ "
        "MLflow's (target ≤ 0.2 for every workload, with p99 ratio ≤ ⅓ at concurrency 8 and 32).",
        "",
    ]
    lines += ["## Setup", ""] + [f"- {k}: {v}" for k, v in meta["setup"].items()] + [""]
    sections = []
    passed = total = 0
    for run in runs:
        sec, p, t = backend_section(run, servers)
        sections += sec
        passed += p
        total += t
    if total:
        lines += [f"**Summary: {passed} of {total} (backend, workload, concurrency) cells meet both targets.**", ""]
        cpu_cells = [
            (
                run.backend,
                wl,
                c,
                cpu_ratio(by_server.get("mlflow", {}).get(c), mk),
                mark(by_server.get("mlflow", {}).get(c), mk)[2],
            )
            for run in runs
            for wl, by_server in run.results.items()
            if wl != "health"
            for c, mk in sorted(by_server.get("modelkeep", {}).items())
        ]
        cpu_ok = [x for x in cpu_cells if x[3] is not None and x[3] <= CPU_TARGET]
        p99_cells = [x for x in cpu_cells if x[2] >= 8 and x[4] is not None]
        p99_ok = [x for x in p99_cells if x[4] <= P99_TARGET]
        lines += [
            f"**CPU per request ≤ ⅕ of MLflow's: {len(cpu_ok)} of {len(cpu_cells)} cells; "
            f"p99 ≤ ⅓ of MLflow's at c ≥ 8: {len(p99_ok)} of {len(p99_cells)} cells.**",
            "",
        ]
        for run in runs:
            for wl, by_server in run.results.items():
                if wl == "health":
                    continue
                for c, mk in sorted(by_server.get("modelkeep", {}).items()):
                    v, tput, p99 = mark(by_server.get("mlflow", {}).get(c), mk)
                    if v != "PASS":
                        lines.append(
                            f"- {run.backend} / {wl} / c={c}: {v}"
                            + (f" (tput {tput:.2f}×, p99 ratio {p99:.3f})" if tput and p99 else "")
                        )
        lines.append("")
    if ceiling:
        lines += client_table("Load client ceiling (do-nothing HTTP server on the same machine)", ceiling)
    lines += sections
    return "\n".join(lines).rstrip() + "\n"
