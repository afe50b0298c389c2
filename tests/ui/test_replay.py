"""The replay form of the Requests page, in a real browser: it takes the page's filters,
shows the count to confirm, and the receiver gets exactly the postbacks it counted."""

from __future__ import annotations

from playwright.async_api import Page, expect

from postbackd.testing import WebhookReceiver
from tests.configs import event
from tests.ui.conftest import TOKEN, log_in, started, wait_deliveries


async def test_resend_what_the_filters_show_after_confirming_the_count(
    receiver: WebhookReceiver, daemon_factory, page: Page
) -> None:
    receiver.respond("/hook", 200)
    daemon = await started(daemon_factory(receiver.url("/hook"), token=TOKEN))
    await daemon.submit(event("e-1", order="o-1"), event("e-2", order="o-2"))
    await wait_deliveries(daemon, 2, state="done")
    await receiver.wait_for(2)

    await log_in(page, daemon, "/ui/requests")
    assert await page.locator("form.replay-start").count() == 0  # unfiltered: no replay
    await page.get_by_label("Order id").fill("o-1")
    await page.get_by_label("State").select_option("done")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**/ui/requests?*order=o-1*")

    await expect(page.get_by_label("Replay these")).to_have_value("resend")
    await page.get_by_role("button", name="Count and confirm…").click()
    await page.wait_for_url("**/ui/requests/replay?*")
    await expect(page.locator(".replay-count")).to_contain_text("1 delivered postback matches")
    assert len(receiver.requests) == 2  # counting sent nothing
    await page.get_by_role("button", name="Resend 1 delivery").click()
    await page.wait_for_url("**/ui/requests?*order=o-1*notice=replayed-resend*")
    await expect(page.locator(".notice")).to_contain_text("Resent: 1 delivered postbacks")

    third = (await receiver.wait_for(3))[2]
    assert third.json()["eventId"] == "e-1"

    # a retry over filters that match nothing retryable says so, and offers no button
    await page.goto(f"{daemon.base_url}/ui/requests/replay?customer=acme&action=retry")
    await expect(page.locator(".replay-count")).to_contain_text("0 deliveries match")
    assert await page.get_by_role("button", name="Retry").count() == 0
    # no filter at all: refused, nothing replayed
    response = await page.goto(f"{daemon.base_url}/ui/requests/replay?action=resend")
    assert response is not None and response.status == 400
    await expect(page.locator(".message")).to_contain_text("Filter the Requests page first")
    assert len(receiver.requests) == 3
