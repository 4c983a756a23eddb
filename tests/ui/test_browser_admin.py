"""The experiments and webhooks pages in a real browser (Debian's chromium driven by Playwright) against a real
`registry serve` with its dispatcher, on SQLite and PostgreSQL: an admin redelivers a delivery from a webhook's
page and the receiver gets it again; runs are picked for comparison from an experiment's page, with the mouse
and with the keyboard. Screenshots go to tests/ui/screenshots/."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, expect

from tests.automations.receivers import Receiver
from tests.conftest import LiveServer, Tokens, bearer
from tests.ui.browsing import shot, sign_in
from tests.ui.seed import seed

WAIT_S = 20.0


async def deliveries(api: httpx.AsyncClient, hook: int) -> list[dict[str, Any]]:
    found = await api.get("/api/v1/webhooks/deliveries", params={"webhook_id": hook})
    assert found.status_code == 200, found.text
    return list(found.json())


async def test_an_admin_redelivers_from_the_webhook_page(
    page: Page, live_server: LiveServer, api_tokens: Tokens, screenshots: Path, backend: str
) -> None:
    with Receiver() as receiver:
        async with httpx.AsyncClient(base_url=live_server.url, headers=bearer(api_tokens.admin), timeout=30) as api:
            made = await api.post(
                "/api/v1/webhooks/",
                json={"url": receiver.url, "events": ["webhook.test"], "description": "browser test receiver"},
            )
            assert made.status_code == 201, made.text
            hook = made.json()
            receiver.secrets = [hook["secret"]]
            try:
                assert (await api.post(f"/api/v1/webhooks/{hook['id']}/test")).status_code == 202
                deadline = time.monotonic() + WAIT_S
                while not [d for d in await deliveries(api, hook["id"]) if d["status"] == "succeeded"]:
                    assert time.monotonic() < deadline, "the test event was not delivered"
                    await asyncio.sleep(0.2)
                delivery = (await deliveries(api, hook["id"]))[0]

                await sign_in(page, api_tokens.admin)
                await page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
                await page.wait_for_url("**/ui/webhooks")
                row = page.locator(f'tr[data-webhook="{hook["id"]}"]')
                await expect(row).to_contain_text(receiver.url)
                await expect(row).to_contain_text("enabled")
                await shot(page, screenshots, backend, "webhooks")

                await row.get_by_role("link", name=f"#{hook['id']}").click()
                await expect(page.get_by_role("heading", level=1)).to_contain_text(f"Webhook #{hook['id']}")
                line = page.locator(f'tr[data-delivery="{delivery["id"]}"]')
                await expect(line).to_contain_text("succeeded")
                await expect(line).to_contain_text("HTTP 200")
                await line.get_by_role("button", name="Redeliver").click()
                await page.wait_for_url(f"**/ui/webhooks/{hook['id']}?redelivered={delivery['id']}")
                await expect(page.get_by_role("status")).to_contain_text(f"Delivery #{delivery['id']} is queued again")
                await shot(page, screenshots, backend, "webhook")

                # The dispatcher sends it again, with the same webhook-id.
                deadline = time.monotonic() + WAIT_S
                while not [h for h in receiver.snapshot() if h.nth == 2]:
                    assert time.monotonic() < deadline, "the redelivery did not arrive"
                    await asyncio.sleep(0.2)
                hits = receiver.snapshot()
                assert len({h.id for h in hits}) == 1 and all(h.verified for h in hits)
            finally:
                await api.delete(f"/api/v1/webhooks/{hook['id']}")


async def test_runs_are_picked_for_comparison_from_the_experiment_page(
    page: Page, live_server: LiveServer, api_tokens: Tokens, screenshots: Path, backend: str
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=60) as client:
        seeded = await seed(client, api_tokens.admin, metrics=False)
        h = bearer(api_tokens.admin)
        other = await client.post(
            "/api/v1/runs/", json={"experiment_id": seeded.experiment_id, "name": "challenger"}, headers=h
        )
        assert other.status_code == 201, other.text
        challenger = other.json()["id"]
        logged = await client.post(
            f"/api/v1/runs/{challenger}/log-batch",
            json={"metrics": [{"key": "loss", "value": 0.3, "step": 1}, {"key": "accuracy", "value": 0.91, "step": 1}]},
            headers=h,
        )
        assert logged.status_code == 200, logged.text
        name = (await client.get(f"/api/v1/experiments/{seeded.experiment_id}", headers=h)).json()["name"]

    await sign_in(page, api_tokens.reader)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Experiments").click()
    await page.wait_for_url("**/ui/experiments")
    await page.get_by_role("link", name=name, exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    rows = page.locator("#runs tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("challenger")
    await expect(rows.first).to_contain_text("accuracy=0.91")
    await shot(page, screenshots, backend, "experiment")

    # One by mouse, one by keyboard (the checkboxes are labelled, so both can be found by their name).
    await page.get_by_label(f"Compare challenger ({challenger[:8]})").check()
    await page.get_by_label(f"Compare baseline ({seeded.run_id[:8]})").focus()
    await page.keyboard.press("Space")
    await expect(page.get_by_label(f"Compare baseline ({seeded.run_id[:8]})")).to_be_checked()
    await page.get_by_role("button", name="Compare selected").click()
    await page.wait_for_url("**/ui/compare?**")
    query = page.url.split("?", 1)[1]
    assert sorted(query.split("&")) == sorted([f"run={challenger}", f"run={seeded.run_id}"])
