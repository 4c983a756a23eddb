"""The pages in-process: what they show, the version table's keyset paging at 10,000 versions, the chart
series, downloads through the session, promotion rules, the API docs' assets."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import insert

from registry.db import Database
from registry.domain.models import ModelVersion
from registry.ui.runs import MAX_POINTS
from tests.conftest import Tokens, bearer, unique
from tests.factories.models import create_model
from tests.ui.conftest import csrf_of, sign_in
from tests.ui.seed import LONG_SERIES, T0, Seeded, loss_at, seed

VERSION_LINK = re.compile(r'/versions/(\d+)">v\1</a>')


@pytest.fixture
async def admin(browser_less: httpx.AsyncClient, api_tokens: Tokens) -> httpx.AsyncClient:
    await sign_in(browser_less, api_tokens.admin)
    return browser_less


async def test_models_list_searches_by_name(admin: httpx.AsyncClient, seeded: Seeded) -> None:
    page = await admin.get("/ui/")
    assert page.status_code == 200 and seeded.model in page.text
    found = await admin.get("/ui/", params={"q": seeded.model.upper()[3:]})
    assert seeded.model in found.text and "production" in found.text
    missing = await admin.get("/ui/", params={"q": "%_'\\ no such"})
    assert missing.status_code == 200
    assert seeded.model not in missing.text and "No model name contains" in missing.text


async def test_model_page_shows_aliases_versions_and_history(admin: httpx.AsyncClient, seeded: Seeded) -> None:
    page = await admin.get(f"/ui/models/{seeded.model}")
    assert page.status_code == 200
    assert "first production release" in page.text and "first staging release" in page.text
    assert [int(n) for n in VERSION_LINK.findall(page.text.split('id="versions"')[1])][:3] == [3, 2, 1]


async def test_version_page_lists_files_and_downloads_them_through_the_session(
    admin: httpx.AsyncClient, browser_less: httpx.AsyncClient, seeded: Seeded
) -> None:
    page = await admin.get(f"/ui/models/{seeded.model}/versions/3")
    assert page.status_code == 200
    assert "weights.bin" in page.text and "4.0 KiB" in page.text and "trained on the March data" in page.text
    assert f"/ui/runs/{seeded.run_id}" in page.text
    got = await admin.get(f"/ui/models/{seeded.model}/versions/3/files/weights.bin")
    assert got.status_code == 200 and got.content == seeded.files["weights.bin"]
    assert "attachment" in got.headers["content-disposition"]
    assert (await admin.get(f"/ui/models/{seeded.model}/versions/3/files/../3/weights.bin")).status_code in (
        303,
        404,
    )
    assert (await admin.get(f"/ui/models/{seeded.model}/versions/3/files/nope.bin")).status_code == 404
    browser_less.cookies.clear()
    anonymous = await browser_less.get(f"/ui/models/{seeded.model}/versions/3/files/weights.bin")
    assert anonymous.status_code == 303


async def test_missing_things_are_html_pages(admin: httpx.AsyncClient, seeded: Seeded) -> None:
    for path in ("/ui/models/no-such-model", f"/ui/models/{seeded.model}/versions/99", "/ui/runs/0123abcd"):
        answer = await admin.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "content-security-policy" in answer.headers


async def test_run_page_and_its_reduced_series(admin: httpx.AsyncClient, seeded: Seeded) -> None:
    page = await admin.get(f"/ui/runs/{seeded.run_id}")
    assert page.status_code == 200
    assert "learning_rate" in page.text and "team" in page.text
    assert 'data-key="loss"' in page.text and 'data-key="system/cpu_utilization_percentage"' in page.text
    long = (await admin.get(f"/ui/runs/{seeded.run_id}/series", params={"key": "loss"})).json()
    assert long["total"] == LONG_SERIES and long["reduced"] is True
    assert len(long["steps"]) == len(long["values"]) == len(long["times"]) <= MAX_POINTS
    assert long["steps"][0] == 0 and long["steps"][-1] == LONG_SERIES - 1
    assert long["steps"] == sorted(long["steps"])
    # Each kept point keeps its own time (the time axis is drawn from the same rows as the step axis).
    assert long["times"] == [T0 + 1000 * int(step) for step in long["steps"]]
    # M4: every step range keeps its lowest and its highest point where they were logged, and the first and
    # last points are kept, so no peak, dip or final value is lost.
    buckets = (MAX_POINTS - 2) // 2
    ranges: dict[int, list[int]] = {}
    for step in range(LONG_SERIES):
        ranges.setdefault(min(int(step / (LONG_SERIES - 1) * buckets), buckets - 1), []).append(step)
    kept = {0, LONG_SERIES - 1}
    for steps in ranges.values():
        kept |= {min(steps, key=loss_at), max(steps, key=loss_at)}
    assert long["steps"] == sorted(kept)
    assert long["values"] == pytest.approx([loss_at(step) for step in long["steps"]])
    everything = [loss_at(step) for step in range(LONG_SERIES)]
    assert min(long["values"]) == pytest.approx(min(everything)) and max(long["values"]) == pytest.approx(
        max(everything)
    )

    short = (await admin.get(f"/ui/runs/{seeded.run_id}/series", params={"key": "accuracy"})).json()
    assert short["total"] == 100 and short["steps"] == list(range(100)) and short["reduced"] is False
    none = (await admin.get(f"/ui/runs/{seeded.run_id}/series", params={"key": "never-logged"})).json()
    assert none == {"key": "never-logged", "total": 0, "reduced": False, "steps": [], "times": [], "values": []}


async def test_a_reduced_series_is_kept_until_the_series_changes(
    admin: httpx.AsyncClient, app_client: httpx.AsyncClient
) -> None:
    run = (await app_client.post("/api/v1/runs/", json={"experiment": unique("exp")})).json()
    log = f"/api/v1/runs/{run['id']}/log-batch"
    points = [{"key": "loss", "value": loss_at(step), "step": step, "timestamp": T0 + step} for step in range(8000)]
    assert (await app_client.post(log, json={"metrics": points})).status_code == 200
    url, key = f"/ui/runs/{run['id']}/series", {"key": "loss"}
    first = (await admin.get(url, params=key)).json()
    assert first["reduced"] is True and first["total"] == 8000
    assert (await admin.get(url, params=key)).json() == first
    # A spike logged later at an old step (the latest point stays the same): the next chart shows it.
    spike = {"key": "loss", "value": 50.0, "step": 4321, "timestamp": T0 + 99_999}
    assert (await app_client.post(log, json={"metrics": [spike]})).status_code == 200
    after = (await admin.get(url, params=key)).json()
    assert after["total"] == 8001 and max(after["values"]) == 50.0
    assert after["steps"][after["values"].index(50.0)] == 4321


async def test_a_series_logged_without_steps_is_reduced_over_time(
    admin: httpx.AsyncClient, app_client: httpx.AsyncClient
) -> None:
    run = (await app_client.post("/api/v1/runs/", json={"experiment": unique("exp")})).json()
    points = [{"key": "lr", "value": float(i % 97), "step": 0, "timestamp": T0 + i} for i in range(MAX_POINTS + 500)]
    assert (await app_client.post(f"/api/v1/runs/{run['id']}/log-batch", json={"metrics": points})).status_code == 200
    found = (await admin.get(f"/ui/runs/{run['id']}/series", params={"key": "lr"})).json()
    assert found["total"] == MAX_POINTS + 500 and found["reduced"] is True
    assert len(found["times"]) <= MAX_POINTS and found["times"] == sorted(found["times"])
    assert found["times"][0] == T0 and found["times"][-1] == T0 + MAX_POINTS + 499
    assert min(found["values"]) == 0.0 and max(found["values"]) == 96.0


async def test_promotion_is_a_compare_and_swap(
    admin: httpx.AsyncClient, ui_app: Litestar, seeded: Seeded, api_tokens: Tokens
) -> None:
    url = f"/ui/models/{seeded.model}/versions/3"
    page = await admin.get(url)
    assert 'data-testid="promote-staging"' in page.text
    # Someone else moves staging after the page was drawn (it showed staging at v2).
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ui_app), base_url="http://registry") as api:
        moved = await api.put(
            f"/api/v1/models/{seeded.model}/aliases/staging",
            json={"version": 1, "reason": "meanwhile"},
            headers=bearer(api_tokens.admin),
        )
        assert moved.status_code == 200
    form = {"csrf": csrf_of(page), "alias": "staging", "expect": "2", "reason": "better recall"}
    conflict = await admin.post(f"{url}/promote", data=form)
    assert conflict.status_code == 409
    assert "staging moved since you opened this page (it now points at v1)" in conflict.text
    retried = await admin.post(f"{url}/promote", data={**form, "expect": "1"})
    assert retried.status_code == 303
    shown = await admin.get(retried.headers["location"])
    assert "staging now points at v3" in shown.text and "better recall" in shown.text


async def test_roles_decide_the_buttons_and_the_service_decides_the_move(
    browser_less: httpx.AsyncClient, seeded: Seeded, api_tokens: Tokens
) -> None:
    url = f"/ui/models/{seeded.model}/versions/2"
    await sign_in(browser_less, api_tokens.reader)
    page = await browser_less.get(url)
    assert 'data-testid="promote-' not in page.text
    forged = {"csrf": csrf_of(page), "alias": "production", "expect": "1", "reason": "forged"}
    refused = await browser_less.post(f"{url}/promote", data=forged)
    assert refused.status_code == 403 and "needs the maintainer role" in refused.text
    refused = await browser_less.post(f"{url}/promote", data={**forged, "alias": "canary", "expect": "0"})
    assert refused.status_code == 403 and "needs the writer role" in refused.text

    browser_less.cookies.clear()
    await sign_in(browser_less, api_tokens.writer)
    page = await browser_less.get(url)
    assert 'data-testid="promote-production"' not in page.text, "production is protected: maintainers only"
    assert 'data-testid="promote-new"' in page.text
    refused = await browser_less.post(f"{url}/promote", data={**forged, "csrf": csrf_of(page)})
    assert refused.status_code == 403


async def test_versions_are_paged_by_key_at_ten_thousand(admin: httpx.AsyncClient, db: Database) -> None:
    total, size = 10_000, 50
    async with db.write() as session:
        model = await create_model(session, name=unique("big"))
        model.last_version = total
        await session.execute(
            insert(ModelVersion),
            [
                {"model_id": model.id, "version": n, "source": "upload", "digest": uuid.uuid4().hex * 2}
                for n in range(1, total + 1)
            ],
        )
    timings = []
    seen: list[int] = []
    for before in (0, 9_951, 51):
        started = time.perf_counter()
        page = await admin.get(f"/ui/models/{model.name}", params={"before": before} if before else None)
        timings.append(time.perf_counter() - started)
        assert page.status_code == 200
        numbers = [int(n) for n in VERSION_LINK.findall(page.text.split('id="versions"')[1].split("</table>")[0])]
        assert len(numbers) == size
        assert numbers == list(range((before or total + 1) - 1, (before or total + 1) - 1 - size, -1))
        older = re.search(r"\?before=(\d+)\" hx-get", page.text)
        assert (older is None) == (before == 51)
        if older:
            assert int(older.group(1)) == numbers[-1]
        seen += numbers
    assert seen[0] == total and seen[-1] == 1
    # Keyset paging: the last page costs what the first does (generous bound for a loaded CI machine).
    assert max(timings) < 2.0, timings


async def test_the_root_page_sends_mlflow_links_on(browser_less: httpx.AsyncClient) -> None:
    root = await browser_less.get("/")
    assert root.status_code == 200 and "/ui/static/links.js" in root.text
    script = await browser_less.get("/ui/static/links.js")
    assert script.status_code == 200 and "#\\/experiments" in script.text


async def test_api_docs_load_their_assets_from_this_server(browser_less: httpx.AsyncClient) -> None:
    for path in ("/schema", "/schema/swagger"):
        docs = await browser_less.get(path)
        assert docs.status_code == 200
        urls = re.findall(r"(?:src|href)=['\"]([^'\"]+)['\"]", docs.text)
        assert urls and all(u.startswith("/ui/static/vendor/swagger-ui/") for u in urls), urls
        for url in urls:
            assert (await browser_less.get(url)).status_code == 200, url
    assert (await browser_less.get("/schema/openapi.json")).status_code == 200
    assert (await browser_less.get("/schema/openapi.yaml")).status_code == 200


GATE = """
version: 1
gates:
  - {id: accuracy, kind: proportion, outcome: correct, threshold: 0.95}
"""


async def test_a_gate_policy_refusal_is_shown_on_the_page(
    browser_less: httpx.AsyncClient, ui_app: Litestar, api_tokens: Tokens
) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ui_app), base_url="http://registry") as api:
        mine = await seed(api, api_tokens.admin, metrics=False)
        made = await api.put(
            f"/api/v1/models/{mine.model}/gate-policies/staging",
            json={"spec": GATE},
            headers=bearer(api_tokens.maintainer),
        )
        assert made.status_code == 200, made.text
    await sign_in(browser_less, api_tokens.maintainer)
    url = f"/ui/models/{mine.model}/versions/3"
    form = {"csrf": csrf_of(await browser_less.get(url)), "alias": "staging", "expect": "2", "reason": "go"}
    refused = await browser_less.post(f"{url}/promote", data=form)
    assert refused.status_code == 412
    assert 'data-testid="promote-error"' in refused.text and "gate" in refused.text
