"""The Requests page in a real browser: filters in the URL, cursor pages, a dead delivery's
four stages, and Retry after the receiver is fixed."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

from playwright.async_api import Page, expect

from postbackd.testing import WebhookReceiver
from tests.configs import event
from tests.ui.conftest import TOKEN, log_in, started, wait_deliveries

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SLOW_TRIGGER = """
[[trigger]]
name = "acme-slow"
customer = "acme"
events = ["order.shipped"]
template = "builtin:order-status-json"
delivery = "webhook"
retry_schedule = ["1h"]
[trigger.options]
url = "URL"
"""


async def test_filter_open_dead_delivery_and_retry_it(
    receiver: WebhookReceiver, daemon_factory, page: Page
) -> None:
    receiver.respond("/hook", 500)
    daemon = await started(daemon_factory(receiver.url("/hook"), token=TOKEN))
    status, body = await daemon.post(
        [event("e-1", order="o-1"), event("e-2", "order.cancelled", order="o-2")]
    )
    assert status == 202, body
    dead = await wait_deliveries(daemon, 2, state="dead")
    cancelled = next(d for d in dead if d["order_id"] == "o-2")

    await log_in(page, daemon, "/ui/requests")
    rows = page.locator("table.requests tbody tr")
    await expect(rows).to_have_count(2)
    await page.get_by_label("Order id").fill("o-2")
    await page.get_by_label("State").select_option("dead")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**/ui/requests?*order=o-2*")
    assert parse_qs(urlsplit(page.url).query) == {"state": ["dead"], "order": ["o-2"]}
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("order.cancelled")
    await expect(rows.first).to_contain_text("500")

    shared = f"{daemon.base_url}/ui/requests?customer=acme&event_type=Order+cancelled"
    await page.goto(shared)  # a link with filters shows the same view (aliases accepted)
    await expect(rows).to_have_count(1)
    await rows.first.get_by_role("link").click()
    await expect(page.locator("#state")).to_have_text("dead")
    delivery_id = page.url.rsplit("/", 1)[1]
    assert delivery_id == cancelled["id"]
    for stage in ("Original event", "Template processing", "Final request", "Responses"):
        await expect(page.get_by_role("heading", name=stage)).to_be_visible()
    await expect(page.locator(".attempt")).to_have_count(4)  # 1 + a schedule of 3 retries
    content = await page.content()
    assert '"orderId": "o-2"' in content  # the original event and the payload, pretty-printed
    assert SECRET not in content  # the signing secret never reaches the page

    receiver.respond("/hook", 200)
    before = len(receiver.requests)
    await page.get_by_role("button", name="Retry now").click()
    await expect(page.get_by_role("status")).to_contain_text("Retry scheduled")
    await expect(page.locator("#state")).to_have_text("done", timeout=15_000)
    await expect(page.locator(".attempt").first).to_contain_text("succeeded")
    arrived = await receiver.wait_for(before + 1)
    assert arrived[-1].headers["webhook-id"] == delivery_id

    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(f"{daemon.base_url}/ui/requests?customer=acme&state=dead")
    await expect(rows).to_have_count(1)  # o-1 is still dead
    await page.get_by_role("button", name="Retry all dead deliveries of acme").click()
    await expect(page.get_by_role("status")).to_have_text("Dead deliveries due again now: 1.")
    assert parse_qs(urlsplit(page.url).query)["customer"] == ["acme"]
    await wait_deliveries(daemon, 2, state="done")


async def test_hold_and_release_a_delivery_waiting_for_its_retry(
    receiver: WebhookReceiver, daemon_factory, page: Page
) -> None:
    receiver.respond("/slow", 500)
    daemon = daemon_factory(receiver.url("/hook"), token=TOKEN)
    daemon.write_files({"slow.toml": SLOW_TRIGGER.replace("URL", receiver.url("/slow"))})
    await started(daemon)
    assert (await daemon.post(event("h-1", order="o-h")))[0] == 202
    (waiting,) = await wait_deliveries(  # failed once, the next try is an hour away
        daemon, 1, state="pending", trigger="acme-slow", where=lambda d: d["attempts"] == 1
    )

    await log_in(page, daemon, f"/ui/requests/{waiting['id']}")
    await expect(page.locator("#state")).to_have_text("pending")
    await page.get_by_role("button", name="Hold").click()
    await expect(page.get_by_role("status")).to_contain_text("held")
    await expect(page.locator("#state")).to_have_text("held")
    await expect(page.locator(".state-line")).to_contain_text("held from the web UI")
    await page.get_by_role("button", name="Release").click()
    await expect(page.get_by_role("status")).to_contain_text("Released")
    # due now: the second and last attempt fails too, so the delivery ends dead
    await expect(page.locator("#state")).to_have_text("dead", timeout=15_000)
    await expect(page.locator(".attempt")).to_have_count(2)


async def test_cursor_pages_keyboard_filter_and_labels(
    receiver: WebhookReceiver, daemon_factory, page: Page
) -> None:
    daemon = await started(daemon_factory(receiver.url("/hook"), token=TOKEN))
    status, body = await daemon.post([event(f"p-{i:02d}", order=f"o-{i}") for i in range(60)])
    assert status == 202, body
    newest_first = await wait_deliveries(daemon, 60, state="done")
    await log_in(page, daemon, "/ui/requests")

    response = await page.request.get(f"{daemon.base_url}/ui/requests")
    assert len(await response.body()) < 100_000  # 50 rows, one page
    links = page.locator("table.requests tbody a")
    await expect(links).to_have_count(50)
    first_page = [href.rsplit("/", 1)[1] for href in await _hrefs(links)]
    assert first_page == [d["id"] for d in newest_first[:50]]

    await page.get_by_role("link", name="Older →").click()
    assert "cursor=" in page.url
    await expect(links).to_have_count(10)
    second_page = [href.rsplit("/", 1)[1] for href in await _hrefs(links)]
    assert second_page == [d["id"] for d in newest_first[50:]]
    await expect(page.get_by_role("link", name="Older →")).to_have_count(0)
    await page.get_by_role("link", name="← Newest").click()
    await expect(links).to_have_count(50)

    await page.keyboard.press("Tab")  # the first stop is the skip link
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.get_by_label("Order id").focus()
    await page.keyboard.type("o-7")
    await page.keyboard.press("Enter")  # a real form: Enter submits it
    await page.wait_for_url("**order=o-7*")
    await expect(links).to_have_count(1)

    unlabelled = await page.evaluate(
        """[...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
           .filter(el => el.tagName === 'BUTTON' ? !el.textContent.trim() : el.labels.length === 0)
           .map(el => el.outerHTML)"""
    )
    assert unlabelled == []


async def _hrefs(links) -> list[str]:
    return [str(await links.nth(i).get_attribute("href")) for i in range(await links.count())]
