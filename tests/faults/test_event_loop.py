"""Big events through slow templates must not stall the event loop of a real daemon.

A ~0.9 MB event goes through a template with a loop inside a loop over its items (quadratic:
minutes of work). The render runs off the loop and is stopped at its time budget: the event is
accepted, its delivery is ``failed`` with a reason that says why, ``/healthz`` answers promptly
all along, and a small event sent meanwhile is delivered. An event over the size limit is a
400 naming ``data``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from postbackd.testing import PostbackdDaemon, WebhookReceiver, event_payload
from tests.faults.hostile import (
    assert_delivered,
    assert_error_json,
    assert_ready,
    post_request,
    raw_http,
    set_http_settings,
)

QUADRATIC = (
    '{"pairs": [{% for a in items %}{% for b in items %}'
    '{% if a.sku == b.sku %}"{{ a.sku[:4] }}",{% endif %}{% endfor %}{% endfor %}"end"]}'
)


async def test_a_slow_render_of_a_big_event_does_not_stall_the_loop(
    postbackd_daemon: Callable[..., PostbackdDaemon], webhook_receiver: WebhookReceiver
) -> None:
    daemon = postbackd_daemon(
        triggers=[
            {
                "delivery": "webhook",
                "customer": "acme",
                "template": "quadratic",
                "options": {"url": webhook_receiver.url("/slow")},
            }
        ],
        customers=("acme", "globex"),
    )
    set_http_settings(daemon, max_body="4MiB")
    daemon.write(
        "templates.toml", {"template": [{"name": "quadratic", "format": "json", "body": QUADRATIC}]}
    )
    daemon.write(
        "globex.toml",
        {
            "trigger": [
                {
                    "name": "globex-all",
                    "customer": "globex",
                    "events": ["order.*"],
                    "template": "builtin:order-status-json",
                    "delivery": "webhook",
                    "options": {"url": webhook_receiver.url("/hook")},
                }
            ]
        },
    )
    await daemon.start()
    items = [{"sku": f"sku-{n:05d}-" + "x" * 160} for n in range(5000)]
    big = json.dumps(event_payload("evt-big", items=items)).encode()
    assert 800_000 < len(big) < 1024 * 1024

    async def post_big() -> tuple[int, float]:
        started = time.monotonic()
        answer = await raw_http(
            daemon.port,
            post_request("/v1/events", big, [("Content-Type", b"application/json")]),
            timeout=60,
        )
        return answer.status, time.monotonic() - started

    posting = asyncio.create_task(post_big())
    slowest = 0.0
    small_sent = False
    while not posting.done():
        started = time.monotonic()
        status, _ = await daemon.request("GET", "/healthz")
        slowest = max(slowest, time.monotonic() - started)
        assert status == 200
        if not small_sent:
            await daemon.submit(event_payload("evt-small", customer="globex"))
            small_sent = True
        await asyncio.sleep(0.05)
    status, seconds = await posting
    assert status == 202
    assert slowest < 1.0, f"/healthz took {slowest:.2f}s while the big event rendered"
    assert seconds < 30, seconds

    (failed,) = await daemon.wait_for_deliveries(1, states=["failed"], timeout=10)
    detail = await daemon.delivery(failed["id"])
    assert "rendering took longer than" in json.dumps(detail), detail
    await assert_delivered(webhook_receiver, ["evt-small"], daemon=daemon)

    too_big = json.dumps(event_payload("evt-huge", blob="y" * 1_200_000)).encode()
    answer = await raw_http(
        daemon.port, post_request("/v1/events", too_big, [("Content-Type", b"application/json")])
    )
    document = assert_error_json(answer, 400)
    assert document["field"] == "data" and "more than the limit" in document["error"]
    await assert_ready(daemon)
