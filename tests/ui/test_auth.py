"""Who gets in: the login page, the session cookie, CSRF on every POST, no-token and disabled
modes, and a token changed by a reload logging everyone out."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from playwright.async_api import Browser, Page, expect

from postbackd.testing import WebhookReceiver
from tests.configs import event, webhook_config
from tests.ui.conftest import TOKEN, log_in, started, wait_deliveries

NEW_TOKEN = "ui-test-token-rotated-77e1"


async def test_token_guards_every_page_and_every_post(
    receiver: WebhookReceiver, daemon_factory, page: Page, tmp_path
) -> None:
    daemon = await started(daemon_factory(receiver.url("/hook"), token=TOKEN))
    assert (await daemon.post(event("a-1", order="secret-order")))[0] == 202
    (delivery,) = await wait_deliveries(daemon, 1, state="done")
    retry_url = f"{daemon.base_url}/ui/requests/{delivery['id']}/retry"

    for path in ("/ui/", "/ui/requests", f"/ui/requests/{delivery['id']}", "/ui/workbench"):
        await page.goto(f"{daemon.base_url}{path}")
        assert page.url.startswith(f"{daemon.base_url}/ui/login?next=")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Log in to postbackd")
        content = await page.content()
        assert "secret-order" not in content and "acme" not in content
    no_session = await page.request.post(retry_url, form={"csrf": "x"}, max_redirects=0)
    assert no_session.status == 403

    await page.get_by_label("Admin token").fill("not-the-token")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("That is not the admin token.")

    await log_in(page, daemon, f"/ui/requests/{delivery['id']}")
    (cookie,) = await page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui/"
    assert TOKEN not in cookie["value"]

    without = await page.request.post(retry_url, form={"other": "1"}, max_redirects=0)
    assert without.status == 403
    assert "CSRF" in await without.text()
    forged = await page.request.post(retry_url, form={"csrf": "forged"}, max_redirects=0)
    assert forged.status == 403
    csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
    with_token = await page.request.post(retry_url, form={"csrf": str(csrf)}, max_redirects=0)
    assert with_token.status == 303  # the same POST with the page's token is accepted
    status, body = await daemon.get(f"/v1/deliveries/{delivery['id']}")
    assert status == 200 and body["delivery"]["state"] in ("pending", "inflight", "done")

    rotated = webhook_config(
        receiver.url("/hook"), port=daemon.port, spool=tmp_path / "spool.db", token=NEW_TOKEN
    )
    daemon.write_files({"daemon.toml": rotated["daemon.toml"]})  # the watcher reloads it
    deadline = time.monotonic() + 15
    while True:
        await page.goto(f"{daemon.base_url}/ui/requests")
        if "/ui/login" in page.url or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert "/ui/login" in page.url, "a new admin token must end the sessions of the old one"

    await page.get_by_label("Admin token").fill(NEW_TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{daemon.base_url}/ui/requests")
    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url(f"{daemon.base_url}/ui/login")
    await page.goto(f"{daemon.base_url}/ui/requests")
    assert "/ui/login" in page.url


async def test_no_token_serves_the_ui_without_login_or_javascript_but_checks_csrf(
    receiver: WebhookReceiver, daemon_factory, browser: Browser
) -> None:
    receiver.respond("/hook", 410)  # 410 Gone: dead at once
    daemon = await started(daemon_factory(receiver.url("/hook")))
    assert (await daemon.post(event("n-1")))[0] == 202
    (delivery,) = await wait_deliveries(daemon, 1, state="dead")

    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(f"{daemon.base_url}/ui/requests?state=dead")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Requests")
        await expect(page.get_by_role("button", name="Log out")).to_have_count(0)
        await page.locator("table.requests tbody a").first.click()
        await expect(page.locator("#state")).to_have_text("dead")
        retry_url = f"{daemon.base_url}/ui/requests/{delivery['id']}/retry"
        refused = await page.request.post(retry_url, form={"csrf": ""}, max_redirects=0)
        assert refused.status == 403

        receiver.respond("/hook", 200)
        await page.get_by_role("button", name="Retry now").click()  # a plain form POST
        await expect(page.get_by_role("status")).to_contain_text("Retry scheduled")
        deadline = time.monotonic() + 15
        while await page.locator("#state").inner_text() != "done":
            assert time.monotonic() < deadline, "the retried delivery did not turn done"
            await asyncio.sleep(0.3)
            await page.reload()  # no script: the reader reloads
    finally:
        await context.close()


async def test_ui_disabled_answers_404(receiver: WebhookReceiver, daemon_factory) -> None:
    daemon = await started(
        daemon_factory(receiver.url("/hook"), daemon_extra="\n[ui]\nenabled = false\n")
    )
    async with aiohttp.ClientSession() as session:
        for path in ("/ui", "/ui/", "/ui/login", "/ui/requests", "/ui/static/ui.css"):
            async with session.get(f"{daemon.base_url}{path}", allow_redirects=False) as response:
                assert response.status == 404, path
        async with session.post(f"{daemon.base_url}/ui/login", data={"token": "x"}) as response:
            assert response.status == 404
        async with session.get(f"{daemon.base_url}/healthz") as response:
            assert response.status == 200  # only the UI is off
