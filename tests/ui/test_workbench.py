"""The template workbench in a real browser: render, warnings and errors marked on their
template line, a draft edited in the page, and "Send test" through the daemon."""

from __future__ import annotations

from playwright.async_api import Dialog, Page, expect

from postbackd.testing import WebhookReceiver
from tests.ui.conftest import TOKEN, log_in, started

TEMPLATE = '''
[[template]]
name = "acme-shipped"
format = "json"
body = """
{
  "order": {{ orderId | tojson }},
  "note": "{{ nosuchfield }}"
}
"""
'''
BROKEN_JSON = '{\n  "order": {{ orderId | tojson }}\n  "status": "shipped"\n}\n'
BROKEN_SYNTAX = '{\n  "order": {{ orderId | tojson }},\n  "x": {{ orderId | tojson }\n}\n'


async def test_render_marks_error_lines_and_send_test_delivers(
    receiver: WebhookReceiver, daemon_factory, page: Page
) -> None:
    daemon = daemon_factory(receiver.url("/hook"), token=TOKEN)
    daemon.write_files({"templates.toml": TEMPLATE})
    await started(daemon)
    await log_in(page, daemon, "/ui/workbench?template=acme-shipped&sample=order.shipped")

    output = page.locator("#output")
    await expect(output).to_contain_text('"order": "4c1f7a2e')  # the shipped sample's orderId
    warnings = page.get_by_role("list", name="Warnings")
    await expect(warnings).to_contain_text("undefined variable 'nosuchfield'")
    await expect(page.locator(".listing li.mark-warning")).to_have_attribute("id", "L3")

    source = page.get_by_label("Source", exact=True)
    await source.fill(BROKEN_JSON)
    await page.get_by_role("button", name="Render").click()
    error = page.locator("#render-error")
    await expect(error).to_contain_text("invalid JSON at line 3, column 3")
    await expect(error).to_contain_text("Render error at template line 3:")
    marked = page.locator(".listing li.mark-error")
    await expect(marked).to_have_count(1)
    await expect(marked).to_have_attribute("id", "L3")
    await expect(marked).to_contain_text('"status": "shipped"')
    await expect(page.get_by_role("heading", name="Result")).to_contain_text("edited source")

    source = page.get_by_label("Source", exact=True)
    await source.fill(BROKEN_SYNTAX)
    await source.press("Control+Enter")  # renders, as the hint says
    await expect(error).to_contain_text("syntax error: unexpected '}'")
    await expect(page.locator(".listing li.mark-error")).to_have_attribute("id", "L3")

    pasted = (
        '{"id": "pasted-1", "type": "order.shipped", "customer": "acme", '
        '"data": {"orderId": "P-9"}}'
    )
    await page.get_by_label("Source", exact=True).fill('{"order": {{ orderId | tojson }}}')
    await page.get_by_label("Or paste an event").fill(pasted)
    await page.get_by_role("button", name="Render").click()
    await expect(output).to_contain_text('"order": "P-9"')

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)
    await page.get_by_label("Trigger").select_option("acme-all")
    await page.get_by_role("button", name="Send test").click()
    sent = page.locator("#sent")
    await expect(sent).to_contain_text("Test of acme-all: delivered")
    await expect(sent).to_contain_text("200")
    (request,) = await receiver.wait_for(1)
    assert b'"orderId":"P-9"' in request.body.replace(b" ", b"")  # the pasted event, saved template
    assert "whsec_" not in await sent.inner_text()
    status, body = await daemon.get("/v1/deliveries")
    assert status == 200 and body["deliveries"] == []  # a test never touches the spool
