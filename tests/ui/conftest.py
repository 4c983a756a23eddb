"""UI fixtures: the app in-process with a cookie jar per client (sessions are cookies, not bearer headers), and
a sign-in helper."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from registry.api.app import create_app
from registry.db import Database
from registry.settings import Settings
from registry.storage.local import LocalBlobStore
from tests.conftest import LiveServer, Tokens
from tests.ui.browsing import CHROMIUM
from tests.ui.seed import Seeded, seed

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="session")
def ui_app(db: Database, settings: Settings) -> Litestar:
    return create_app(settings, db=db, store=LocalBlobStore(settings.data_dir / "blobs"))


@pytest.fixture
async def browser_less(ui_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the in-process app with its own cookies, signed in as nobody."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ui_app), base_url="http://registry") as client:
        yield client


@pytest.fixture(scope="session")
async def seeded(ui_app: Litestar, api_tokens: Tokens) -> Seeded:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ui_app), base_url="http://registry") as client:
        return await seed(client, api_tokens.admin)


async def sign_in(client: httpx.AsyncClient, token: str, *, next_url: str = "/ui/") -> httpx.Response:
    """Sign ``client`` in through the form, as a browser does; returns the answer to the form post."""
    form = await client.get("/ui/sign-in")
    found = CSRF.search(form.text)
    assert found is not None
    return await client.post("/ui/sign-in", data={"csrf": found.group(1), "token": token, "next": next_url})


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


def session_cookie(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith("mk_session="):
            return header
    return None


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(__file__).resolve().parent / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


# -- the browser: Debian's chromium driven by Playwright against the real `registry serve` (live_server) ----------
@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium per test module: Debian's package, never a download."""
    if not CHROMIUM.exists():
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM}: install it with `apt-get install -y chromium`")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser, live_server: LiveServer) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile on the live server, in a fixed zone and locale. Pages keep their CSP: scripts a
    test runs go in through ``page.evaluate`` (the DevTools protocol, outside the page's policy), so pages are
    checked exactly as they ship."""
    made = await browser.new_context(base_url=live_server.url, timezone_id="Europe/Berlin", locale="en-GB")
    made.set_default_timeout(15_000)
    yield made
    await made.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()
