"""postbackd-chat against a real HTTP server standing in for Slack/Mattermost/Teams.

Uses postbackd's fixtures (`postbackd.testing`, loaded as a pytest plugin): `webhook_receiver`
is a real aiohttp server on 127.0.0.1, `postbackd_daemon` a real daemon subprocess.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import postbackd_chat
from aiohttp import web
from postbackd_chat import ChatDelivery

from postbackd.plugin import OutcomeKind
from postbackd.testing import make_delivery, make_event, plugin_host

WEBHOOK_PATH = "/services/T0001/B0001/sEcReTtOkEn"


def test_registers_as_chat_and_passes_the_daemon_checks():
    host = plugin_host(postbackd_chat)
    assert host.deliveries["chat"].value is ChatDelivery
    assert host.registered_by("postbackd_chat") == {"deliveries": ["chat"]}


def test_options_are_validated_with_every_problem_named():
    chat = ChatDelivery({})
    assert chat.validate_options({"url": "https://hooks.slack.com/services/x"}) == []
    errors = chat.validate_options(
        {"url": "ftp://x", "template": "{order} {status", "timeout": "soon", "colour": "red"}
    )
    assert "options.colour: unknown option" in errors[0]
    assert any("options.url: 'ftp://x/' is not an http(s) URL" in e for e in errors)
    assert any("unknown placeholder {order}" in e for e in errors)
    assert any("unbalanced brace" in e for e in errors)
    assert any(e.startswith("options.timeout: invalid duration 'soon'") for e in errors)
    assert chat.validate_options({}) == [
        "options.url is required: the chat service's incoming-webhook URL"
    ]


def test_unknown_settings_are_refused():
    try:
        ChatDelivery({"colour": "red"})
    except ValueError as exc:
        assert str(exc).startswith(
            "[deliveries.chat] colour: unknown setting; [deliveries.chat] takes"
        )
    else:
        raise AssertionError("an unknown [deliveries.chat] setting was accepted")


async def test_posts_a_readable_line_with_channel_and_username(webhook_receiver):
    chat = ChatDelivery({"username": "postbackd"})
    event = make_event("evt-9", "order.in_transit", order="A<1>&2")
    delivery = make_delivery(event, trigger="acme-ops")
    options = {
        "url": webhook_receiver.url(WEBHOOK_PATH),
        "channel": "#print-ops",
        "template": "{{{customer}}} order {order_id} is {status} — attempt {attempt}",
    }
    try:
        outcome = await chat.deliver(delivery, options)
    finally:
        await chat.close()
    assert outcome.kind is OutcomeKind.OK, outcome
    (request,) = webhook_receiver.requests
    assert request.path == WEBHOOK_PATH
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        "text": "{acme} order A&lt;1&gt;&amp;2 is in transit — attempt 1",
        "channel": "#print-ops",
        "username": "postbackd",
    }
    assert outcome.request is not None
    assert outcome.request["url"] == f"http://127.0.0.1:{webhook_receiver.port}/services/…"
    assert "sEcReTtOkEn" not in json.dumps(outcome.request)


async def test_answers_map_to_retry_and_permanent_failure(webhook_receiver):
    chat = ChatDelivery({})
    webhook_receiver.respond("/busy", 503)
    webhook_receiver.respond("/gone", 404)
    try:
        busy = await chat.deliver(make_delivery(), {"url": webhook_receiver.url("/busy")})
        gone = await chat.deliver(make_delivery(), {"url": webhook_receiver.url("/gone")})
    finally:
        await chat.close()
    assert busy.kind is OutcomeKind.RETRY and busy.status == 503
    assert gone.kind is OutcomeKind.FAIL and gone.status == 404
    assert "fix options.url" in (gone.error or "")


async def test_rate_limit_is_retried_after_the_advertised_delay(webhook_receiver):
    async def slow_down(request: web.Request) -> web.Response:
        return web.Response(status=429, text="rate_limited", headers={"Retry-After": "30"})

    webhook_receiver.handle("POST", "/limited", slow_down)
    chat = ChatDelivery({})
    try:
        outcome = await chat.deliver(make_delivery(), {"url": webhook_receiver.url("/limited")})
    finally:
        await chat.close()
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.retry_after == 30.0
    assert "rate_limited" in (outcome.error or "")


async def test_no_answer_within_the_timeout_is_retried(webhook_receiver):
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(1)  # well past the 0.3 s timeout; short, so teardown is quick
        return web.Response(text="too late")

    webhook_receiver.handle("POST", "/slow", hang)
    chat = ChatDelivery({})
    try:
        outcome = await chat.deliver(
            make_delivery(), {"url": webhook_receiver.url("/slow"), "timeout": "300ms"}
        )
    finally:
        await chat.close()
    assert outcome.kind is OutcomeKind.RETRY
    assert "within 0.3s" in (outcome.error or "")


async def test_refused_connection_is_retried():
    chat = ChatDelivery({})
    try:
        outcome = await chat.deliver(make_delivery(), {"url": "http://127.0.0.1:9/hook"})
    finally:
        await chat.close()
    assert outcome.kind is OutcomeKind.RETRY
    assert "cannot post to http://127.0.0.1:9/hook/…" in (outcome.error or "")


async def test_through_a_running_daemon(webhook_receiver, postbackd_daemon):
    webhook_receiver.respond(WEBHOOK_PATH, 500, 200)
    daemon = postbackd_daemon(
        triggers=[
            {
                "name": "acme-ops",
                "events": ["order.failed"],
                "delivery": "chat",
                "options": {
                    "url": webhook_receiver.url(WEBHOOK_PATH),
                    "template": "{customer}: order {order_id} {status}",
                },
            }
        ]
    )
    await daemon.start()
    await daemon.submit(
        {"id": "evt-f1", "type": "order.failed", "customer": "acme", "data": {"orderId": "o-7"}}
    )
    requests = await webhook_receiver.wait_for(2, path=WEBHOOK_PATH)
    assert [r.json()["text"] for r in requests] == ["acme: order o-7 failed"] * 2
    (delivery,) = await daemon.wait_for_deliveries(1)
    assert delivery["state"] == "done"
    detail = await daemon.delivery(delivery["id"])
    assert [a["status"] for a in detail["attempts"]] == [500, 200]


def test_listed_by_postbackd_plugins_as_an_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "postbackd", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (chat,) = [p for p in json.loads(result.stdout) if p["name"] == "chat"]
    assert chat["version"] == postbackd_chat.__version__
    assert chat["origin"] == "entry point"
    assert chat["package"] == "postbackd-chat"
    assert chat["registers"] == {"deliveries": ["chat"]}


def test_check_reports_a_bad_option_at_the_trigger(postbackd_daemon):
    daemon = postbackd_daemon(
        triggers=[{"name": "ops", "delivery": "chat", "options": {"url": "http://x/h", "x": 1}}]
    )
    result = daemon.command("check")
    assert result.returncode == 1
    assert "postbackd.toml" in result.stdout
    assert "options.x: unknown option" in result.stdout
