"""How the dispatcher shares the work: per-destination bounds and circuit breakers."""

from __future__ import annotations

import asyncio
import time

from postbackd.testing import WebhookReceiver, free_port
from tests.configs import event

BREAKER_SETTINGS = 'per_destination = 1\nbreaker_failures = 3\nbreaker_cooldown = "1500ms"'


def two_customer_files(
    spool, port: int, slow_url: str, fast_url: str, daemon_extra: str = ""
) -> dict[str, str]:
    triggers = "".join(
        f"""
[[customer]]
id = "{name}"
name = "{name}"

[[trigger]]
name = "{name}-all"
customer = "{name}"
events = ["order.*"]
template = "builtin:order-status-json"
delivery = "webhook"
retry_schedule = ["100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms"]
[trigger.options]
url = "{url}"
timeout = "10s"
"""
        for name, url in (("slowco", slow_url), ("fastco", fast_url))
    )
    return {
        "daemon.toml": f"""
[daemon]
spool = "{spool}"
allow_private_destinations = true
grace = "1s"
{daemon_extra}

[sources.http]
listen = "127.0.0.1:{port}"
""",
        "customers.toml": triggers,
    }


def for_customer(customer: str, event_id: str) -> dict:
    payload = event(event_id, order=event_id)
    payload["customer"] = customer
    return payload


async def test_a_hung_destination_does_not_delay_another(tmp_path, daemon_factory):
    slow, fast = WebhookReceiver().start(), WebhookReceiver().start()
    try:
        slow.delay("/hook", 4.0)
        port = free_port()
        daemon = daemon_factory(
            "",
            files=two_customer_files(
                tmp_path / "spool.db",
                port,
                slow.url("/hook"),
                fast.url("/hook"),
                daemon_extra="per_destination = 2\nconcurrency = 4",
            ),
        )
        daemon.port = port
        daemon.launch()
        await daemon.wait_ready()
        await daemon.post([for_customer("slowco", f"s-{n}") for n in range(30)])
        await asyncio.sleep(0.3)  # the slow destination's slots are taken and its queue is full
        started = time.monotonic()
        await daemon.post([for_customer("fastco", f"f-{n}") for n in range(10)])
        await fast.wait_for(10, timeout=3)
        assert time.monotonic() - started < 2.0
        assert len(slow.requests) <= 2  # never more than per_destination at once
    finally:
        slow.stop()
        fast.stop()


async def test_breaker_pauses_a_failing_destination_then_probes(tmp_path, daemon_factory, receiver):
    receiver.respond("/hook", 500)
    port = free_port()
    other = WebhookReceiver().start()
    try:
        daemon = daemon_factory(
            "",
            files=two_customer_files(
                tmp_path / "spool.db",
                port,
                receiver.url("/hook"),
                other.url("/hook"),
                daemon_extra=BREAKER_SETTINGS,
            ),
        )
        daemon.port = port
        daemon.launch()
        await daemon.wait_ready()
        await daemon.post([for_customer("slowco", f"b-{n}") for n in range(5)])
        await receiver.wait_for(3, timeout=5)
        await asyncio.sleep(1.0)  # inside the cooldown: nothing is sent to it...
        assert len(receiver.requests) == 3
        await daemon.post([for_customer("fastco", "other-1")])
        await other.wait_for(1, timeout=3)  # ...while other destinations go on
        receiver.respond("/hook", 200)  # the destination comes back
        await receiver.wait_events({f"b-{n}" for n in range(5)}, timeout=10)
        status, body = await daemon.get("/v1/deliveries?customer=slowco&limit=10")
        assert status == 200
        assert {d["state"] for d in body["deliveries"]} == {"done"}
        # Waiting behind the breaker is not an attempt: 3 failures + 5 successes in all.
        assert sum(d["attempts"] for d in body["deliveries"]) == len(receiver.requests) == 8
    finally:
        other.stop()
