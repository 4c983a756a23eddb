"""The compare page: runs side by side, params as a diff table, latest metric values, and each metric's
history overlaid in one chart (in-process, then in a real browser)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from litestar import Litestar
from playwright.async_api import BrowserContext, Page, expect

from tests.conftest import LiveServer, Tokens, bearer, unique
from tests.ui.browsing import INKED
from tests.ui.conftest import sign_in

ROW = re.compile(r'<tr data-key="([^"]+)"( class="differs")?>')
FIGURE = re.compile(r"<figure class=\"chart compare\" data-runs='([^']*)' data-key=\"([^\"]+)\">")


@dataclass(frozen=True)
class Runs:
    """Three runs of one experiment. ``a`` and ``c`` share learning_rate and seed; ``b`` has no seed and
    alone has batch_size; ``c`` alone uses sgd; all three ran 3 epochs. ``a`` and ``b`` log ``loss`` (at
    different steps) and a system metric; ``c`` logs only ``accuracy``."""

    experiment: str
    a: str
    b: str
    c: str


async def make_runs(client: httpx.AsyncClient, admin: str) -> Runs:
    h = bearer(admin)
    experiment = unique("compare")
    params = {
        "a": {"learning_rate": "0.01", "epochs": "3", "optimizer": "adam", "seed": "1"},
        "b": {"learning_rate": "0.02", "epochs": "3", "optimizer": "adam", "batch_size": "64"},
        "c": {"learning_rate": "0.01", "epochs": "3", "optimizer": "sgd", "seed": "1"},
    }
    metrics: dict[str, list[dict[str, object]]] = {
        "a": [{"key": "loss", "value": 1.0 / (1 + s), "step": s} for s in range(100)]
        + [{"key": "system/cpu_utilization_percentage", "value": 20.0 + s % 5, "step": s} for s in range(30)],
        "b": [{"key": "loss", "value": 0.8 / (1 + s / 2), "step": s} for s in range(0, 200, 2)]
        + [{"key": "system/cpu_utilization_percentage", "value": 40.0 + s % 3, "step": s} for s in range(30)],
        "c": [{"key": "accuracy", "value": 0.5 + 0.004 * s, "step": s} for s in range(50)],
    }
    ids: dict[str, str] = {}
    for label in ("a", "b", "c"):
        made = await client.post("/api/v1/runs/", json={"experiment": experiment, "name": f"run-{label}"}, headers=h)
        assert made.status_code == 201, made.text
        ids[label] = made.json()["id"]
        batch = {"params": params[label], "metrics": metrics[label]}
        logged = await client.post(f"/api/v1/runs/{ids[label]}/log-batch", json=batch, headers=h)
        assert logged.status_code == 200, logged.text
    finished = await client.patch(f"/api/v1/runs/{ids['a']}", json={"status": "FINISHED"}, headers=h)
    assert finished.status_code == 200, finished.text
    return Runs(experiment=experiment, **ids)


def compare_url(*ids: str, only_diff: bool = False) -> str:
    query = [("run", i) for i in ids] + ([("only_diff", "1")] if only_diff else [])
    return f"/ui/compare?{urlencode(query)}"


def table(text: str, table_id: str) -> str:
    return text.split(f'id="{table_id}"')[1].split("</table>")[0]


def rows(text: str, table_id: str = "params") -> dict[str, bool]:
    """Each row's key in a table, and whether it is marked as differing."""
    return {key: bool(differs) for key, differs in ROW.findall(table(text, table_id))}


def charts(text: str) -> dict[str, list[dict[str, object]]]:
    return {key: json.loads(unescape(sources)) for sources, key in FIGURE.findall(text)}


@pytest.fixture
async def runs(ui_app: Litestar, api_tokens: Tokens) -> Runs:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ui_app), base_url="http://registry") as api:
        return await make_runs(api, api_tokens.admin)


@pytest.fixture
async def reader(browser_less: httpx.AsyncClient, api_tokens: Tokens) -> httpx.AsyncClient:
    await sign_in(browser_less, api_tokens.reader)
    return browser_less


async def test_the_header_shows_each_run(reader: httpx.AsyncClient, runs: Runs) -> None:
    page = await reader.get(compare_url(runs.a, runs.b))
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    head = table(page.text, "runs")
    assert f'<a href="/ui/runs/{runs.a}">run-a</a>' in head and f'<a href="/ui/runs/{runs.b}">run-b</a>' in head
    assert head.index(runs.a) < head.index(runs.b), "runs in the order asked"
    assert head.count(runs.experiment) == 2 and "test-admin" in head
    assert "FINISHED" in head and "RUNNING" in head and "<time datetime=" in head
    assert "/ui/static/compare.js" in page.text and " style=" not in page.text and "<script>" not in page.text


async def test_params_diff_marks_exactly_the_differing_keys(reader: httpx.AsyncClient, runs: Runs) -> None:
    two = await reader.get(compare_url(runs.a, runs.b))
    assert rows(two.text) == {
        "batch_size": True,
        "epochs": False,
        "learning_rate": True,
        "optimizer": False,
        "seed": True,
    }
    params = table(two.text, "params")
    assert params.count("≠") == 3 and params.count("(differs)") == 3
    # seed is missing on b, batch_size on a: shown as a dash.
    seed_row = params.split('data-key="seed"')[1].split("</tr>")[0]
    dash = '<span class="sub" title="not logged on this run">—</span>'
    assert re.findall(r"<td[^>]*>(.*?)</td>", seed_row) == ["1", dash]
    assert "3 of 5 params differ" in two.text

    three = await reader.get(compare_url(runs.a, runs.b, runs.c))
    assert rows(three.text) == {
        "batch_size": True,
        "epochs": False,
        "learning_rate": True,
        "optimizer": True,
        "seed": True,
    }
    same = await reader.get(compare_url(runs.a, runs.c))
    assert rows(same.text) == {"epochs": False, "learning_rate": False, "optimizer": True, "seed": False}


async def test_only_diff_hides_the_equal_rows(reader: httpx.AsyncClient, runs: Runs) -> None:
    page = await reader.get(compare_url(runs.a, runs.b))
    link = re.search(r'<a href="([^"]+)" data-testid="only-diff">', page.text)
    assert link is not None
    only = await reader.get(unescape(link.group(1)))
    assert only.status_code == 200
    assert rows(only.text) == {"batch_size": True, "learning_rate": True, "seed": True}
    back = re.search(r'<a href="([^"]+)" data-testid="show-all">', only.text)
    assert back is not None and unescape(back.group(1)) == compare_url(runs.a, runs.b)
    assert rows((await reader.get(compare_url(runs.a, runs.c, only_diff=True))).text) == {"optimizer": True}


async def test_metrics_are_overlaid_and_tabled(reader: httpx.AsyncClient, runs: Runs) -> None:
    page = await reader.get(compare_url(runs.a, runs.b, runs.c))
    found = charts(page.text)
    assert list(found) == ["accuracy", "loss", "system/cpu_utilization_percentage"]
    loss = found["loss"]
    assert [s["label"] for s in loss] == ["run-a", "run-b"] and [s["colour"] for s in loss] == [1, 2]
    assert loss[0]["url"] == f"/ui/runs/{runs.a}/series?key=loss"
    assert [s["label"] for s in found["accuracy"]] == ["run-c"] and found["accuracy"][0]["colour"] == 3
    assert found["system/cpu_utilization_percentage"][1]["url"] == (
        f"/ui/runs/{runs.b}/series?key=system%2Fcpu_utilization_percentage"
    )
    # System metrics in their own section, after the training ones.
    metrics, system = page.text.split("<h2>Metrics</h2>")[1].split("<h2>System</h2>")
    assert 'data-key="loss"' in metrics and "system/" not in metrics and 'data-key="system/' in system
    # What a chart fetches is the run page's series endpoint.
    series = (await reader.get(str(loss[1]["url"]))).json()
    assert series["steps"][:3] == [0, 2, 4] and series["total"] == 100

    latest = table(page.text, "latest")
    assert list(rows(page.text, "latest")) == ["accuracy", "loss", "system/cpu_utilization_percentage"]
    loss_row = latest.split('data-key="loss"')[1].split("</tr>")[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", loss_row)
    assert cells[0] == '0.01 <span class="sub">step 99</span>'
    assert cells[1].endswith('<span class="sub">step 198</span>') and "—" in cells[2]


@pytest.mark.parametrize(
    ("how", "status", "says"),
    [
        ("none", 400, "pick 2 to 5 runs to compare (got 0)"),
        ("one", 400, "pick 2 to 5 runs to compare (got 1)"),
        ("six", 400, "pick 2 to 5 runs to compare (got 6)"),
        ("twice", 400, "is named twice"),
        ("unknown", 404, "does not exist"),
        ("odd", 404, "does not exist"),
        ("nul", 400, "NUL character"),
        ("bad flag", 400, "malformed"),
    ],
)
async def test_wrong_choices_are_error_pages(
    reader: httpx.AsyncClient, runs: Runs, how: str, status: int, says: str
) -> None:
    missing = uuid.uuid4().hex
    urls = {
        "none": "/ui/compare",
        "one": compare_url(runs.a),
        "six": compare_url(runs.a, runs.b, runs.c, *(uuid.uuid4().hex for _ in range(3))),
        "twice": compare_url(runs.a, runs.b, runs.a),
        "unknown": compare_url(runs.a, missing),
        "odd": compare_url(runs.a, "../" + "x" * 300),
        "nul": compare_url(runs.a, f"{runs.b}\x00"),
        "bad flag": compare_url(runs.a, runs.b) + "&only_diff=maybe",
    }
    answer = await reader.get(urls[how])
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert "content-security-policy" in answer.headers
    assert 'role="alert"' in answer.text and says in unescape(answer.text)
    if how == "unknown":
        assert missing in answer.text


async def test_not_signed_in_goes_to_sign_in(browser_less: httpx.AsyncClient, runs: Runs) -> None:
    browser_less.cookies.clear()
    url = compare_url(runs.a, runs.b)
    answer = await browser_less.get(url)
    assert answer.status_code == 303
    where = answer.headers["location"]
    assert where.startswith("/ui/sign-in?why=sign_in&next=%2Fui%2Fcompare%3Frun%3D")
    assert runs.b in where


# The browser: Debian's chromium driven by Playwright against a real `registry serve` (as in test_browser.py).


async def test_the_browser_draws_the_overlaid_charts(
    context: BrowserContext, live_server: LiveServer, api_tokens: Tokens, screenshots: Path, backend: str
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=60) as api:
        mine = await make_runs(api, api_tokens.admin)
    page: Page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    await page.goto("/ui/sign-in")
    await page.get_by_label("API token").fill(api_tokens.reader)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/ui/")

    await page.goto(compare_url(mine.a, mine.b, mine.c))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Compare 3 runs")
    loss = page.locator('.chart[data-key="loss"]')
    await expect(loss).to_have_attribute("data-state", "drawn")
    assert await loss.get_attribute("data-series-count") == "2"
    assert await loss.get_attribute("data-total") == "200"
    await expect(loss.locator(".u-legend")).to_contain_text("run-a")
    await expect(loss.locator(".u-legend")).to_contain_text("run-b")
    inked = await loss.locator("canvas").evaluate(INKED)
    assert inked > 500, f"the loss chart drew {inked} pixels"
    accuracy = page.locator('.chart[data-key="accuracy"]')
    await expect(accuracy).to_have_attribute("data-state", "drawn")
    assert await accuracy.get_attribute("data-series-count") == "1"
    system = page.locator('.chart[data-key="system/cpu_utilization_percentage"]')
    await expect(system).to_have_attribute("data-series-count", "2")
    await expect(page.locator("#params tr.differs")).to_have_count(4)
    # Times in the viewer's zone, as on every page (ui.js).
    await expect(page.locator("#runs time[data-local]")).to_have_count(3)
    assert errors == [], errors
    await page.screenshot(path=screenshots / f"{backend}-compare.png", full_page=True)

    await page.get_by_test_id("only-diff").click()
    await page.wait_for_url("**only_diff=1")
    await expect(page.locator("#params tbody tr")).to_have_count(4)
