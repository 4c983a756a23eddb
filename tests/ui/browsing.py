"""What the browser tests share besides their fixtures (those are in conftest.py): signing in through the form,
screenshots, and the check that a chart's canvas was drawn on."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's package: the tests never download a browser."""

INKED = """canvas => {
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let inked = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) inked++;
    return inked;
}"""
"""For ``locator.evaluate``: how many pixels of a canvas are not transparent."""


async def sign_in(page: Page, token: str) -> None:
    """Sign ``page``'s browser in through the form, as a person does; lands on the models list."""
    await page.goto("/ui/sign-in")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/ui/")


async def shot(page: Page, folder: Path, backend: str, name: str, *, full_page: bool = True) -> None:
    await page.screenshot(path=folder / f"{backend}-{name}.png", full_page=full_page)
