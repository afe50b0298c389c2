"""The event path end to end: HTTP intake → spool → webhook, against a real receiver.

The daemon runs as a subprocess on a generated configuration; the receiver is a real aiohttp
server; signatures are checked with the independent `standardwebhooks` package.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

from standardwebhooks.webhooks import Webhook

from postbackd.testing import free_port
from tests.configs import event, webhook_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _delivery_states(daemon, expected: int, timeout: float = 15.0, **query: str):
    """Poll the admin API until `expected` deliveries reached a final state."""
    params = "&".join(f"{k}={v}" for k, v in query.items())
    deadline = time.monotonic() + timeout
    while True:
        status, body = await daemon.get(f"/v1/deliveries?limit=500&{params}")
        assert status == 200, body
        final = [
            d for d in body["deliveries"] if d["state"] in ("done", "dead", "failed", "cancelled")
        ]
        if len(final) >= expected or time.monotonic() > deadline:
            return body["deliveries"]
        await asyncio.sleep(0.1)


async def test_posted_event_arrives_signed(receiver, daemon_factory):
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    status, body = await daemon.post(event("evt-1", order="o-1"))
    assert status == 202, body
    assert body == {"accepted": ["evt-1"], "duplicates": []}
    (request,) = await receiver.wait_for(1)
    payload = json.loads(request.body)
    assert payload["orderId"] == "o-1"
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.headers["User-Agent"].startswith("postbackd/")
    Webhook(SECRET).verify(request.body, request.headers)  # raises if the signature is wrong
    deliveries = await _delivery_states(daemon, 1)
    assert deliveries[0]["id"] == request.headers["webhook-id"]
    assert deliveries[0]["state"] == "done"


async def test_same_event_twice_gives_one_delivery(receiver, daemon_factory):
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    first = await daemon.post(event("evt-dup"))
    second = await daemon.post([event("evt-dup"), event("evt-new", order="o-2")])
    assert first == (202, {"accepted": ["evt-dup"], "duplicates": []})
    assert second == (202, {"accepted": ["evt-new"], "duplicates": ["evt-dup"]})
    await receiver.wait_for(2)
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == 2


async def test_failures_are_retried_until_they_arrive(receiver, daemon_factory):
    receiver.respond("/hook", 500, 503, 200)
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    await daemon.post(event("evt-retry"))
    requests = await receiver.wait_for(3, timeout=10)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.headers["webhook-timestamp"] for r in requests}) >= 1
    (delivery,) = await _delivery_states(daemon, 1)
    assert delivery["state"] == "done"
    assert delivery["attempts"] == 3


async def test_always_failing_receiver_ends_dead_after_schedule(receiver, daemon_factory):
    receiver.respond("/hook", 500)
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    await daemon.post(event("evt-dead"))
    (delivery,) = await _delivery_states(daemon, 1)
    assert delivery["state"] == "dead"
    assert delivery["attempts"] == 4  # a schedule of 3 delays: at most 4 attempts
    status, detail = await daemon.get(f"/v1/deliveries/{delivery['id']}")
    assert status == 200
    assert len(detail["attempts"]) == 4
    assert detail["attempts"][0]["response"]["status"] == 500


async def test_gone_is_dead_at_once(receiver, daemon_factory):
    receiver.respond("/hook", 410)
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    await daemon.post(event("evt-gone"))
    (delivery,) = await _delivery_states(daemon, 1)
    assert delivery["state"] == "dead"
    assert delivery["attempts"] == 1


async def test_private_destination_refused_without_permission(receiver, daemon_factory, tmp_path):
    port = free_port()
    files = webhook_config(receiver.url("/hook"), port=port, spool=tmp_path / "ssrf.db")
    files["daemon.toml"] = files["daemon.toml"].replace(
        "allow_private_destinations = true", "allow_private_destinations = false"
    )
    daemon = daemon_factory(receiver.url("/hook"), files=files)
    daemon.port = port
    daemon.launch()
    await daemon.wait_ready()
    await daemon.post(event("evt-ssrf"))
    (delivery,) = await _delivery_states(daemon, 1)
    assert delivery["state"] == "dead"
    assert "allow_private_destinations" in delivery["last_error"]
    assert receiver.requests == []


async def test_bad_input_is_a_precise_4xx(receiver, daemon_factory):
    daemon = daemon_factory(receiver.url("/hook"), token="s3cret")
    daemon.launch()
    await daemon.wait_ready()
    status, body = await daemon.post(None, raw=b"{not json")
    assert status == 400 and "malformed JSON" in body["error"]
    status, body = await daemon.post({"id": "x", "customer": "acme", "data": {}})
    assert (status, body["field"]) == (400, "type")
    status, body = await daemon.post([event("ok-1"), {**event("bad"), "data": []}])
    assert (status, body["field"]) == (400, "[1].data")
    status, body = await daemon.post(None, raw=b"\xff\xfe")
    assert status == 400 and "UTF-8" in body["error"]
    status, body = await daemon.post(None, raw=b"[" * 100 + b"]" * 100)
    assert status == 400
    status, body = await daemon.post([])
    assert status == 400 and "empty" in body["error"]
    status, body = await daemon.post(event("too-big", note="x" * (2 * 1024 * 1024)))
    assert status == 413 and "max_body" in body["error"]
    status, body = await daemon.post(event("no-token"), token="wrong")
    assert status == 401 and "token" in body["error"]
    await asyncio.sleep(0.3)
    assert receiver.requests == []  # nothing of a rejected request was spooled


async def test_sigterm_stops_cleanly(receiver, daemon_factory):
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    await daemon.post(event("evt-term"))
    await receiver.wait_for(1)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit() == 0
    assert "postbackd stopped" in daemon.logs()


async def test_kill_9_loses_nothing_that_was_accepted(receiver, daemon_factory):
    receiver.respond("/hook", 200)
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    accepted: set[str] = set()

    async def poster(worker: int) -> None:
        for n in range(60):
            try:
                status, body = await daemon.post(
                    event(f"crash-{worker}-{n}", order=f"o-{worker}-{n}")
                )
            except Exception:
                return  # the daemon died under us: this event was never acknowledged
            if status == 202:
                accepted.update(body["accepted"])

    posters = [asyncio.create_task(poster(w)) for w in range(4)]
    await asyncio.sleep(0.4)
    daemon.signal(signal.SIGKILL)
    await asyncio.gather(*posters)
    await daemon.wait_exit()
    assert accepted, "no event was accepted before the kill"
    daemon.launch()
    await daemon.wait_ready()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        delivered = {json.loads(r.body)["eventId"] for r in receiver.requests}
        if accepted <= delivered:
            break
        await asyncio.sleep(0.2)
    delivered_ids: dict[str, set[str]] = {}
    for request in receiver.requests:
        delivered_ids.setdefault(json.loads(request.body)["eventId"], set()).add(
            request.headers["webhook-id"]
        )
    missing = accepted - set(delivered_ids)
    assert not missing, f"{len(missing)} accepted events never delivered"
    assert all(len(ids) == 1 for ids in delivered_ids.values()), "a duplicate changed webhook-id"


async def test_ordered_supersede_never_goes_backwards(receiver, daemon_factory, tmp_path):
    receiver.respond("/hook", 500)
    port = free_port()
    files = webhook_config(
        receiver.url("/hook"),
        port=port,
        spool=tmp_path / "ordered.db",
        extra_trigger="ordered = true\nsupersede = true",
    )
    files["acme.toml"] = files["acme.toml"].replace(
        'retry_schedule = ["200ms", "200ms", "200ms"]', 'retry_schedule = ["1500ms", "1500ms"]'
    )
    daemon = daemon_factory(receiver.url("/hook"), files=files)
    daemon.port = port
    daemon.launch()
    await daemon.wait_ready()
    await daemon.post(event("o-shipped", "order.shipped", order="o-9"))
    await receiver.wait_for(1)
    await asyncio.sleep(0.3)  # its failure is recorded: it waits for a retry
    await daemon.post(event("o-transit", "order.in_transit", order="o-9"))
    await receiver.wait_for(2)  # the waiting "shipped" was replaced, "in transit" went out
    await asyncio.sleep(0.3)
    await daemon.post(event("o-delivered", "order.delivered", order="o-9"))
    await receiver.wait_for(3)
    receiver.respond("/hook", 200)
    deliveries = await _delivery_states(daemon, 3, order="o-9")
    states = {d["event_id"]: d["state"] for d in deliveries}
    assert states == {"o-shipped": "cancelled", "o-transit": "cancelled", "o-delivered": "done"}
    heard = [json.loads(r.body)["eventId"] for r in receiver.requests]
    assert heard[:3] == ["o-shipped", "o-transit", "o-delivered"]
    assert set(heard[3:]) == {"o-delivered"}  # after "delivered", nothing older is heard


async def test_ordered_waits_for_the_earlier_status(receiver, daemon_factory):
    receiver.respond("/hook", 500, 500, 200)
    daemon = daemon_factory(receiver.url("/hook"), extra_trigger="ordered = true")
    daemon.launch()
    await daemon.wait_ready()
    await daemon.post(event("w-shipped", "order.shipped", order="o-7"))
    await receiver.wait_for(1)
    await daemon.post(event("w-transit", "order.in_transit", order="o-7"))
    await receiver.wait_for(4, timeout=10)
    heard = [json.loads(r.body)["eventId"] for r in receiver.requests]
    assert heard == ["w-shipped", "w-shipped", "w-shipped", "w-transit"]
