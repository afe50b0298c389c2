"""Delay alerts from silence through a real daemon: an ``[[sla]]`` timer started by
order.received fires an order.delayed postback to a real receiver when no order.shipped
follows in time, an order.shipped cancels it, and a timer survives ``kill -9`` and fires once.
"""

from __future__ import annotations

import asyncio
import copy
import signal
import time
from collections.abc import Callable
from typing import Any

from postbackd.samples import load_sample
from postbackd.sla import alert_id
from postbackd.testing import PostbackdDaemon, WebhookReceiver

WITHIN = 2.0  # seconds: short enough for a test, long enough to act before it runs out


def rule(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "ship-in-time",
        "after": "order.received",
        "expect": ["order.shipped"],
        "within": f"{WITHIN}s",
        "emit": "order.delayed",
        **overrides,
    }


def alert_daemon(
    factory: Callable[..., PostbackdDaemon], receiver: WebhookReceiver, **overrides: Any
) -> PostbackdDaemon:
    return factory(
        triggers=[
            {
                "name": "acme-delays",
                "events": ["order.delayed"],
                "template": "builtin:gelato-status-v2",
                "delivery": "webhook",
                "options": {"url": receiver.url("/delayed")},
            },
            {
                "name": "acme-status",
                "events": ["order.received", "order.shipped"],
                "delivery": "webhook",
                "options": {"url": receiver.url("/status")},
            },
        ],
        sla=[rule(**overrides)],
    )


def order_event(kind: str, order_id: str, event_id: str) -> dict[str, Any]:
    raw = copy.deepcopy(load_sample(kind))
    raw["id"] = event_id
    raw["data"]["orderId"] = order_id
    return raw


async def timers(daemon: PostbackdDaemon, state: str = "pending") -> list[dict[str, Any]]:
    status, body = await daemon.get(f"/v1/timers?state={state}")
    assert status == 200, body
    found: list[dict[str, Any]] = body["timers"]
    return found


async def test_silence_after_received_sends_one_delayed_postback(
    webhook_receiver: WebhookReceiver, postbackd_daemon: Callable[..., PostbackdDaemon]
) -> None:
    daemon = alert_daemon(postbackd_daemon, webhook_receiver)
    await daemon.start()
    started = time.monotonic()
    await daemon.submit(order_event("order.received", "order-late", "evt-received-late"))
    (pending,) = await timers(daemon)
    assert pending["rule"] == "ship-in-time" and pending["order_id"] == "order-late"
    assert pending["started_by"] == "evt-received-late"

    (alert,) = await webhook_receiver.wait_for(1, path="/delayed", timeout=15)
    assert time.monotonic() - started >= WITHIN - 0.1  # not before it was due
    body = alert.json()
    assert body["orderId"] == "order-late"
    assert body["message"].startswith("Order delayed: no order.shipped within 2s")
    (fired,) = await timers(daemon, "fired")
    assert fired["id"] == alert_id("ship-in-time", "acme", "order-late")
    assert fired["note"] == f"fired as order.delayed event {fired['id']}"
    assert await timers(daemon) == []
    delivered = await daemon.deliveries(event_type="order.delayed")
    assert len(delivered) == 1 and delivered[0]["event_id"] == fired["id"]
    await asyncio.sleep(WITHIN)  # nothing fires again
    assert len([r for r in webhook_receiver.requests if r.path == "/delayed"]) == 1
