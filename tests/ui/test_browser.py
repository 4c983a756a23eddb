"""The UI in a real browser (Debian's chromium driven by Playwright) against a real `registry serve`, on
SQLite and PostgreSQL. Each test leaves a screenshot of the pages it checks in tests/ui/screenshots/."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from playwright.async_api import BrowserContext, Locator, Page, expect

from tests.conftest import LiveServer, Tokens, bearer
from tests.monitoring.monitor_helpers import HOUR, frame, ingest, last_full_hour, new_model, promote, set_baseline
from tests.ui.browsing import INKED, shot, sign_in
from tests.ui.seed import LONG_SERIES, Seeded, seed, upload_blob

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


async def seeded_on(server: LiveServer, tokens: Tokens, **options: bool) -> Seeded:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        return await seed(client, tokens.admin, **options)


@pytest.fixture(scope="module")
async def shared(live_server: LiveServer, api_tokens: Tokens) -> Seeded:
    """A model whose aliases no test moves (promotion tests seed their own)."""
    return await seeded_on(live_server, api_tokens)


async def test_sign_in_and_out(
    page: Page, context: BrowserContext, api_tokens: Tokens, screenshots: Path, backend: str
) -> None:
    await page.goto("/ui/")
    await page.wait_for_url(re.compile(r"/ui/sign-in\?why=sign_in&next=%2Fui(%2F)?$"))
    await expect(page.get_by_text("Sign in to continue.")).to_be_visible()
    await shot(page, screenshots, backend, "sign-in")

    await page.get_by_label("API token").fill("mk_0123456789ab_wrong")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("unknown token")

    await page.get_by_label("API token").fill(api_tokens.reader)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/ui/")
    await expect(page.get_by_test_id("me")).to_have_text("test-reader")
    cookie = next(c for c in await context.cookies() if c["name"] == "mk_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert cookie["path"] == "/ui"

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/ui/sign-in?why=signed_out")
    await expect(page.get_by_text("You signed out.")).to_be_visible()
    assert not [c for c in await context.cookies() if c["name"] == "mk_session"]
    await page.goto("/ui/")
    await page.wait_for_url(re.compile(r"/ui/sign-in\?"))


async def test_browse_model_version_run_with_charts(
    page: Page, shared: Seeded, api_tokens: Tokens, screenshots: Path, backend: str
) -> None:
    await sign_in(page, api_tokens.admin)
    await expect(page.get_by_role("link", name=shared.model)).to_be_visible()
    # Times are shown in the viewer's zone (Europe/Berlin here), the ISO instant kept as the title.
    first = page.locator("main time[data-local]").first
    assert re.match(r"\d{4}-\d\d-\d\dT", await first.get_attribute("title") or "")
    assert "UTC" not in await first.inner_text()
    await page.get_by_label("Find by name").fill(shared.model[-6:])
    await expect(page.locator("#models tbody tr")).to_have_count(1)
    await shot(page, screenshots, backend, "models")

    await page.get_by_role("link", name=shared.model).click()
    await expect(page.get_by_role("heading", name=shared.model, exact=True)).to_be_visible()
    await expect(page.get_by_text("first production release")).to_be_visible()
    await shot(page, screenshots, backend, "model")

    await page.locator("#versions").get_by_role("link", name="v3", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(f"{shared.model} v3")
    async with page.expect_download() as downloading:
        await page.get_by_role("link", name="weights.bin").click()
    download = await downloading.value
    assert Path(await download.path()).read_bytes() == shared.files["weights.bin"]
    await shot(page, screenshots, backend, "version")

    await page.get_by_role("link", name=shared.run_id).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(shared.run_name)
    await expect(page.get_by_text("learning_rate")).to_be_visible()
    loss = page.locator('.chart[data-key="loss"]')
    await expect(loss).to_have_attribute("data-state", "drawn")
    assert await loss.get_attribute("data-total") == str(LONG_SERIES)
    assert 2_000 < int(await loss.get_attribute("data-points") or 0) <= 5_000
    await expect(loss.locator(".note")).to_contain_text("downsampled")
    await expect(page.locator('.chart[data-key="accuracy"]')).to_have_attribute("data-points", "100")
    await expect(page.locator('.chart[data-key="system/cpu_utilization_percentage"]')).to_have_attribute(
        "data-state", "drawn"
    )
    inked = await loss.locator("canvas").evaluate(INKED)
    assert inked > 500, f"the loss chart drew {inked} pixels"
    await expect(page.get_by_test_id("diff").locator("span.add")).to_have_text("+lr = 0.01")
    await shot(page, screenshots, backend, "run")

    # The chart controls redraw every chart: a time axis, then smoothing (raw series kept faintly).
    await page.get_by_label("X axis").select_option("time")
    await expect(loss).to_have_attribute("data-axis", "time")
    await page.get_by_label("Smoothing").fill("0.9")
    await expect(loss).to_have_attribute("data-smoothing", "0.9")
    await expect(page.locator("#smoothing-value")).to_have_text("0.9")
    legend = loss.locator(".u-legend .u-series")
    await expect(legend).to_have_count(3)  # x, raw, smoothed
    await expect(legend.nth(1)).to_contain_text("loss (raw)")
    await page.emulate_media(color_scheme="dark")
    await shot(page, screenshots, backend, "run-dark")


async def test_gate_report_view(
    page: Page, shared: Seeded, api_tokens: Tokens, screenshots: Path, backend: str
) -> None:
    await sign_in(page, api_tokens.reader)
    await page.goto(f"/ui/models/{quote(shared.model)}/versions/3")
    await page.get_by_test_id("gate-runs").get_by_role("link", name=f"#{shared.gate_run_id}").click()
    await page.wait_for_url(f"**/ui/gate-runs/{shared.gate_run_id}")
    await expect(page.get_by_test_id("verdict")).to_have_text("FAIL")
    drawings = page.get_by_test_id("evidence")
    await expect(drawings).to_have_count(2)

    async def centre_x(locator: Locator) -> float:
        box = await locator.bounding_box()
        assert box is not None
        return box["x"] + box["width"] / 2

    # As drawn on screen: the passing gate's estimate lies right of its (>=) requirement, the inconclusive
    # gate's interval straddles its own.
    passing = page.locator('tr[data-gate="accuracy"]')
    assert await centre_x(passing.get_by_test_id("estimate")) > await centre_x(passing.get_by_test_id("threshold"))
    await expect(passing.get_by_test_id("evidence")).to_have_attribute("data-status", "PASS")
    unsure = page.locator('tr[data-gate="near-perfect"]')
    await expect(unsure.get_by_test_id("evidence")).to_have_attribute("data-status", "INCONCLUSIVE")
    bar = await unsure.locator("line.interval").first.bounding_box()
    threshold = await centre_x(unsure.get_by_test_id("threshold"))
    assert bar is not None and bar["x"] < threshold < bar["x"] + bar["width"]
    await shot(page, screenshots, backend, "gate-run")


async def test_drift_check_shows_the_evidently_report_in_a_sandboxed_frame(
    page: Page, live_server: LiveServer, api_tokens: Tokens, screenshots: Path, backend: str
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, headers=bearer(api_tokens.admin), timeout=120) as api:
        model = await new_model(api)
        await set_baseline(api, model, 1, frame(600, seed=1))
        await promote(api, model, 1)
        assert (
            await api.put(f"/api/v1/models/{model}/monitor", json={"spec": "version: 1\nmin_rows: 100\n"})
        ).is_success
        hour = last_full_hour()
        assert (await ingest(api, model, frame(300, seed=41, start=hour, shift=2.0))).is_success
        check = await api.post(
            f"/api/v1/models/{model}/monitor/checks",
            params={"alias": "production", "window": "1h", "end": (hour + HOUR).isoformat()},
        )
        assert check.json()["drift_detected"] is True
    await sign_in(page, api_tokens.reader)
    await page.goto(f"/ui/models/{quote(model)}")
    await page.get_by_role("link", name="drift", exact=True).click()
    await expect(page.get_by_test_id("drift-status")).to_have_text("drift")
    report = page.frame_locator('[data-testid="drift-report"]')
    # Evidently builds the report on first view; its scripts run inside the sandbox and draw the page.
    await expect(report.locator("body")).to_contain_text("amount", timeout=120_000)
    # The sandbox gives the frame an origin of its own: the registry's page cannot reach into it, nor it out.
    origin = await page.locator('[data-testid="drift-report"]').evaluate(
        "frame => { try { return frame.contentWindow.document.domain; } catch (e) { return 'blocked'; } }"
    )
    assert origin == "blocked"
    await page.wait_for_timeout(1500)  # let its charts settle for the picture
    await shot(page, screenshots, backend, "drift-check")
    # The version page embeds the newest check's report too, loaded when its box is opened.
    await page.goto(f"/ui/models/{quote(model)}/versions/1")
    await page.get_by_text("Evidently report of the newest check").click()
    embedded = page.frame_locator('[data-testid="version-drift-report"]')
    await expect(embedded.locator("body")).to_contain_text("amount", timeout=60_000)


async def test_promotion_conflict_is_shown(
    page: Page, live_server: LiveServer, api_tokens: Tokens, screenshots: Path, backend: str
) -> None:
    mine = await seeded_on(live_server, api_tokens, metrics=False)
    await sign_in(page, api_tokens.maintainer)
    await page.goto(f"/ui/models/{quote(mine.model)}/versions/3")
    await page.get_by_label("Reason", exact=True).first.fill("recall +2pt")
    # Someone else moves production after this page was drawn (it shows production at v1).
    async with httpx.AsyncClient(base_url=live_server.url) as api:
        moved = await api.put(
            f"/api/v1/models/{mine.model}/aliases/production",
            json={"version": 2, "reason": "hotfix", "expect": 1},
            headers=bearer(api_tokens.admin),
        )
        assert moved.status_code == 200, moved.text
    await page.get_by_test_id("promote-production").click()
    error = page.get_by_test_id("promote-error")
    await expect(error).to_contain_text("production moved since you opened this page (it now points at v2)")
    await shot(page, screenshots, backend, "promote-conflict")

    # The page now shows the new holder; promoting from it works.
    await page.locator('input[name="reason"]').first.fill("recall +2pt, checked again")
    await page.get_by_test_id("promote-production").click()
    await expect(page.get_by_role("status")).to_contain_text("production now points at v3")
    await expect(page.get_by_text("recall +2pt, checked again")).to_be_visible()


async def test_reader_has_no_button_and_a_forged_form_is_refused(
    page: Page, context: BrowserContext, shared: Seeded, api_tokens: Tokens
) -> None:
    await sign_in(page, api_tokens.reader)
    url = f"/ui/models/{quote(shared.model)}/versions/3"
    await page.goto(url)
    await expect(page.get_by_text("needs the maintainer role")).to_be_visible()
    await expect(page.locator('[data-testid^="promote-"]')).to_have_count(0)
    csrf = await page.locator('input[name="csrf"]').first.input_value()
    forged = await context.request.post(
        f"{url}/promote", form={"csrf": csrf, "alias": "production", "expect": "1", "reason": "forged"}
    )
    assert forged.status == 403
    assert "needs the maintainer role" in await forged.text()


async def test_a_form_with_a_wrong_csrf_token_is_refused(
    page: Page, live_server: LiveServer, api_tokens: Tokens, screenshots: Path, backend: str
) -> None:
    mine = await seeded_on(live_server, api_tokens, metrics=False)
    await sign_in(page, api_tokens.maintainer)
    await page.goto(f"/ui/models/{quote(mine.model)}/versions/3")
    await page.locator('form:has([data-testid="promote-staging"]) input[name="csrf"]').evaluate(
        "input => { input.value = 'forged-' + input.value.slice(7); }"
    )
    await page.get_by_test_id("promote-staging").click()
    await expect(page.get_by_role("alert")).to_contain_text("security token is missing or does not match")
    await shot(page, screenshots, backend, "csrf-refused")
    async with httpx.AsyncClient(base_url=live_server.url) as api:
        staging = await api.get(f"/api/v1/models/{mine.model}/aliases/staging", headers=bearer(api_tokens.admin))
    assert staging.json()["version"] == 2, "nothing moved"


async def test_mlflow_hash_links_land_on_the_pages(page: Page, shared: Seeded, api_tokens: Tokens) -> None:
    await sign_in(page, api_tokens.reader)
    await page.goto(f"/#/experiments/{shared.experiment_id}/runs/{shared.run_id}")
    await page.wait_for_url(f"**/ui/runs/{shared.run_id}")
    await expect(page.get_by_role("heading", level=1)).to_contain_text(shared.run_name)
    await page.goto(f"/#/models/{quote(shared.model)}/versions/2")
    await page.wait_for_url(f"**/ui/models/{quote(shared.model)}/versions/2")
    await expect(page.get_by_role("heading", level=1)).to_contain_text(f"{shared.model} v2")
    await page.goto(f"/#/models/{quote(shared.model)}")
    await page.wait_for_url(f"**/ui/models/{quote(shared.model)}")
    await page.goto("/")
    await page.wait_for_url("**/ui/")


async def test_api_docs_render_with_the_internet_out_of_reach(page: Page, screenshots: Path, backend: str) -> None:
    refused: list[str] = []

    async def only_loopback(route: object) -> None:
        from playwright.async_api import Route

        assert isinstance(route, Route)
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            await route.continue_()
        else:
            refused.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_loopback)
    await page.goto("/schema/swagger")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Modelkeep registry")
    await expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    assert await page.locator(".swagger-ui .opblock").count() > 30
    assert refused == []
    await shot(page, screenshots, backend, "api-docs", full_page=False)


async def test_older_versions_page_in_place(page: Page, live_server: LiveServer, api_tokens: Tokens) -> None:
    name = f"paged-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=live_server.url) as api:
        assert (await api.post("/api/v1/models/", json={"name": name}, headers=bearer(api_tokens.admin))).is_success
        for number in range(1, 56):
            blob = await upload_blob(api, api_tokens.admin, f"{name} {number}".encode())
            created = await api.post(
                f"/api/v1/models/{name}/versions",
                json={"files": [{"path": "model.bin", **blob}]},
                headers=bearer(api_tokens.admin),
            )
            assert created.status_code == 201
    await sign_in(page, api_tokens.reader)
    await page.goto(f"/ui/models/{name}")
    rows = page.locator("#versions tbody tr")
    await expect(rows).to_have_count(50)
    await expect(rows.first).to_contain_text("v55")
    await page.evaluate("window.sameDocument = true")
    await page.get_by_role("link", name="Older versions →").click()
    await page.wait_for_url(f"**/ui/models/{name}?before=6")
    await expect(rows).to_have_count(5)
    assert await page.evaluate("window.sameDocument === true"), "htmx swapped the table in place"
    await expect(rows.first).to_contain_text("v5")
    await expect(page.get_by_role("link", name="Older versions →")).to_have_count(0)
    await page.get_by_role("link", name="← Newest").click()
    await expect(rows).to_have_count(50)
