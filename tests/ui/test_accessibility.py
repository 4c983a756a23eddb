"""Accessibility of the UI's pages: axe-core (vendored under tests/ui/vendor/axe-core/, test-only) run inside
Debian's chromium, driven by Playwright, against a real `registry serve` on SQLite and PostgreSQL, in the light
and the dark colour scheme. A page passes when axe finds nothing of impact "serious" or "critical"; moderate and
minor findings are printed (``pytest -s`` or ``-rA``) but do not fail.

Pages checked (``PAGES``): sign-in (plain and with an error), the models list, a model, a version, a run and the
comparison of two runs (once their charts have drawn), an error page, the experiments list and one experiment,
webhooks, jobs and the audit log. The API docs (/schema/swagger) are Swagger UI's, third-party: not checked. A new
page gets a line in ``PAGES``."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.conftest import LiveServer, Tokens, bearer, unique
from tests.ui.browsing import sign_in
from tests.ui.seed import Seeded, seed

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
SCHEMES = ("light", "dark")
FAILING = {"serious", "critical"}
SHOWN_NODES = 4
"""Elements listed per violation in a failure message."""


@dataclass(frozen=True)
class Data:
    seeded: Seeded
    other_run_id: str


@pytest.fixture(scope="module")
def axe_source() -> str:
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
async def data(live_server: LiveServer, api_tokens: Tokens) -> Data:
    """A model with three versions, aliases and history, its run with charts, and a second run (for compare)."""
    async with httpx.AsyncClient(base_url=live_server.url, timeout=60) as client:
        seeded = await seed(client, api_tokens.admin)
        h = bearer(api_tokens.admin)
        other = await client.post(
            "/api/v1/runs/",
            json={"experiment": unique("exp"), "name": "challenger", "tags": {"team": "risk"}},
            headers=h,
        )
        assert other.status_code == 201, other.text
        run_id = other.json()["id"]
        points = [{"key": "loss", "value": 0.9 / (1 + s) + 0.02 * math.cos(s / 30), "step": s} for s in range(300)]
        logged = await client.post(
            f"/api/v1/runs/{run_id}/log-batch",
            json={"params": {"learning_rate": "0.02"}, "metrics": points},
            headers=h,
        )
        assert logged.status_code == 200, logged.text
    return Data(seeded=seeded, other_run_id=run_id)


async def charts_drawn(page: Page) -> None:
    """Every chart on the page drew (none is loading or failed)."""
    charts = page.locator(".chart")
    count = await charts.count()
    await expect(page.locator('.chart[data-state="drawn"]')).to_have_count(count)


async def wrong_token(page: Page) -> None:
    await page.get_by_label("API token").fill("mk_0123456789ab_wrong")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("unknown token")


@dataclass(frozen=True)
class Target:
    name: str
    path: Callable[[Data], str]
    signed_in: bool = True
    status: int = 200
    """What the page must answer: axe on an error page instead of the intended one would prove nothing."""
    ready: Callable[[Page], Awaitable[None]] | None = None
    """Run after loading the page, before axe: wait for what scripts draw, or bring the page into a state."""


PAGES = [
    Target("sign-in", lambda d: "/ui/sign-in", signed_in=False),
    Target("sign-in-error", lambda d: "/ui/sign-in", signed_in=False, ready=wrong_token),
    Target("models", lambda d: "/ui/"),
    Target("model", lambda d: f"/ui/models/{quote(d.seeded.model)}"),
    Target("version", lambda d: f"/ui/models/{quote(d.seeded.model)}/versions/3"),
    Target("run", lambda d: f"/ui/runs/{d.seeded.run_id}", ready=charts_drawn),
    Target("not-found", lambda d: "/ui/models/no-such-model", status=404),
    # Pages other engineers built while this file was written; each answered 200 in-process when it was run.
    Target("compare", lambda d: f"/ui/compare?run={d.seeded.run_id}&run={d.other_run_id}", ready=charts_drawn),
    Target("experiments", lambda d: "/ui/experiments"),
    Target("experiment", lambda d: f"/ui/experiments/{d.seeded.experiment_id}"),
    Target("webhooks", lambda d: "/ui/webhooks"),
    Target("jobs", lambda d: "/ui/jobs"),
    Target("audit", lambda d: "/ui/audit"),
]


async def run_axe(page: Page, source: str) -> list[dict[str, Any]]:
    if not await page.evaluate("typeof window.axe === 'object'"):
        await page.evaluate(source)
    return list(
        await page.evaluate(
            """async () => {
                const result = await axe.run(document, { resultTypes: ["violations"] });
                return result.violations.map(v => ({
                    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                    nodes: v.nodes.map(n => ({
                        target: n.target.map(String), html: n.html, summary: n.failureSummary || "",
                    })),
                }));
            }"""
        )
    )


def describe(found: list[tuple[str, dict[str, Any]]]) -> str:
    lines = []
    for scheme, v in found:
        lines.append(f"[{scheme}] {v['id']} ({v['impact']}): {v['help']} — {v['helpUrl']}")
        for node in v["nodes"][:SHOWN_NODES]:
            summary = " ".join(node["summary"].split())
            lines.append(f"    at {' > '.join(node['target'])}: {node['html'][:200]}")
            if summary:
                lines.append(f"       {summary[:400]}")
        if len(v["nodes"]) > SHOWN_NODES:
            lines.append(f"    ... and {len(v['nodes']) - SHOWN_NODES} more elements")
    return "\n".join(lines)


async def check(target: Target, page: Page, data: Data, api_tokens: Tokens, axe_source: str) -> None:
    if target.signed_in:
        await sign_in(page, api_tokens.admin)
    found: list[tuple[str, dict[str, Any]]] = []
    for scheme in SCHEMES:
        await page.emulate_media(color_scheme=scheme)
        answer = await page.goto(target.path(data))
        assert answer is not None and answer.status == target.status, f"{target.path(data)}: {answer and answer.status}"
        if target.ready is not None:
            await target.ready(page)
        found += [(scheme, v) for v in await run_axe(page, axe_source)]
    failing = [(s, v) for s, v in found if v["impact"] in FAILING]
    others = [(s, v) for s, v in found if v["impact"] not in FAILING]
    if others:
        print(f"\n{target.name}: {len(others)} moderate/minor finding(s)\n{describe(others)}")
    assert not failing, f"{target.name}: axe found serious/critical violations\n{describe(failing)}"


@pytest.mark.parametrize("target", PAGES, ids=[t.name for t in PAGES])
async def test_page_has_no_serious_violations(
    target: Target, page: Page, data: Data, api_tokens: Tokens, axe_source: str
) -> None:
    await check(target, page, data, api_tokens, axe_source)
