"""Browser fixtures: headless Debian chromium driven by playwright, and a logged-in page.

playwright's own browser download does not work here, so the tests launch /usr/bin/chromium
(installed by scripts/chromium.sh). Without it — or without playwright — the browser tests
skip with the reason; under CI=true that is a failure instead, so CI cannot go green by
skipping them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from postbackd.testing import PostbackdDaemon

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = Path(os.environ.get("POSTBACKD_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "ui-test-token-3c2f9a"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: .venv/bin/pip install -e '.[test]'"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: run scripts/chromium.sh (apt-get install chromium)"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    missing = browser_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI: {missing}")
        pytest.skip(missing)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh context (its own cookies); JavaScript errors fail the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    new_page = await context.new_page()
    errors: list[str] = []
    new_page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield new_page
    finally:
        await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


async def log_in(page: Page, daemon: PostbackdDaemon, path: str = "/ui/") -> None:
    """Open `path`, land on the login form, enter the token, and arrive back at `path`."""
    await page.goto(f"{daemon.base_url}{path}")
    assert "/ui/login" in page.url
    await page.get_by_label("Admin token").fill(TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{daemon.base_url}{path}")


async def started(daemon: PostbackdDaemon) -> PostbackdDaemon:
    daemon.launch()
    await daemon.wait_ready()
    return daemon


async def wait_deliveries(
    daemon: PostbackdDaemon,
    count: int,
    timeout: float = 15.0,
    where: Callable[[dict[str, Any]], bool] = lambda delivery: True,
    **query: str,
) -> list[dict[str, Any]]:
    """Poll the admin API until `count` deliveries match `query` (e.g. state="dead")
    and `where`."""
    params = "&".join(f"{key}={value}" for key, value in query.items())
    deadline = time.monotonic() + timeout
    while True:
        status, body = await daemon.get(f"/v1/deliveries?limit=500&{params}")
        assert status == 200, body
        found = [delivery for delivery in body["deliveries"] if where(delivery)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} deliveries with {query} expected, got {body}")
        await asyncio.sleep(0.1)
