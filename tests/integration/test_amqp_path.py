"""AMQP intake end to end: RabbitMQ → the daemon (a subprocess) → spool → webhook.

The broker is the real one of ``scripts/rabbitmq.sh``; the test declares the queues (the
daemon consumes them as they exist, as in production where the topology is provisioned) and
publishes like an order platform would: persistent messages, publisher confirms, and holding
and retrying a message while the broker is away. The receiver is a real aiohttp server.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from postbackd.testing import PostbackdDaemon, WebhookReceiver, free_port
from tests.configs import event, webhook_config
from tests.sources.amqp.rabbitmq_fixtures import Broker, amqp_channel, queue_name, rabbitmq

__all__ = ["amqp_channel", "queue_name", "rabbitmq"]

Channel = aio_pika.abc.AbstractChannel


def amqp_daemon(
    make: Callable[..., PostbackdDaemon],
    receiver: WebhookReceiver,
    spool: Path,
    broker: Broker,
    queue: str,
    *,
    prefetch: int = 16,
    ordered: bool = False,
) -> PostbackdDaemon:
    """A daemon with [sources.amqp] beside [sources.http] (for /readyz), its own spool."""
    port = free_port()
    files = webhook_config(
        receiver.url("/hook"),
        port=port,
        spool=spool,
        extra_trigger="ordered = true" if ordered else "",
    )
    files["amqp.toml"] = f"""
[sources.amqp]
url = "{broker.url}"
queue = "{queue}"
prefetch = {prefetch}
reconnect_interval = "0.5s"
"""
    daemon = make(receiver.url("/hook"), files=files)
    daemon.port = port
    return daemon


async def publish(channel: Channel, queue: str, body: bytes | dict[str, Any], **props: Any) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    message = aio_pika.Message(raw, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **props)
    await channel.default_exchange.publish(message, routing_key=queue)


async def depth(channel: Channel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    count = declared.declaration_result.message_count
    assert count is not None
    return count


async def wait_readyz(daemon: PostbackdDaemon, status: int, timeout: float) -> dict[str, Any]:
    """Poll /readyz until it answers `status`; returns that answer's body."""
    deadline = time.monotonic() + timeout
    while True:
        got, body = await daemon.get("/readyz")
        if got == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(
                f"/readyz never answered {status} in {timeout}s; last {got} {body}"
            )
        await asyncio.sleep(0.1)


async def spooled(daemon: PostbackdDaemon) -> dict[str, str]:
    """Event id → delivery id, as the daemon's own spool records them."""
    status, body = await daemon.get("/v1/deliveries?limit=1000")
    assert status == 200, body
    return {d["event_id"]: d["id"] for d in body["deliveries"]}


async def publish_stream(url: str, queue: str, ids: list[str], pause: float) -> None:
    """Publish one by one with confirms; hold and retry a message while the broker is away."""
    connection = await aio_pika.connect_robust(url, timeout=10, reconnect_interval=0.3)
    async with connection:
        channel = await connection.channel()
        for event_id in ids:
            for _attempt in range(300):  # bounded: about a minute of outage
                try:
                    body = event(event_id, order=f"o-{event_id}")
                    await asyncio.wait_for(publish(channel, queue, body), timeout=5)
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"{event_id}: the broker never took it back")
            await asyncio.sleep(pause)


async def test_a_thousand_events_are_all_delivered_each_order_in_queue_order(
    rabbitmq, amqp_channel, queue_name, receiver, daemon_factory, tmp_path
):
    await amqp_channel.declare_queue(queue_name, durable=True)
    statuses = ("order.shipped", "order.in_transit", "order.delivered")
    messages = [event(f"m-{n:04}", statuses[n % 3], order=f"o-{n // 3}") for n in range(1000)]
    for message in messages:  # one by one: the queue holds them in exactly this order
        await publish(amqp_channel, queue_name, message)
    daemon = amqp_daemon(
        daemon_factory, receiver, tmp_path / "a.db", rabbitmq, queue_name, prefetch=64, ordered=True
    )
    daemon.launch()
    await daemon.wait_ready()

    wanted = {m["id"] for m in messages}
    await receiver.wait_events(wanted, timeout=45)
    ids = receiver.webhook_ids()
    assert all(len(hooks) == 1 for hooks in ids.values())
    recorded = await spooled(daemon)
    assert set(recorded) == wanted
    assert {k: next(iter(v)) for k, v in ids.items()} == recorded
    heard: dict[str, list[str]] = {}
    for request in receiver.requests:
        body = json.loads(request.body)
        heard.setdefault(body["orderId"], []).append(body["eventId"])
    backwards = {order: got for order, got in heard.items() if got != sorted(got)}
    assert not backwards, f"ordered = true, yet statuses went out of queue order: {backwards}"
    assert await depth(amqp_channel, queue_name) == 0


async def test_malformed_messages_are_dead_lettered(
    rabbitmq, amqp_channel, queue_name, receiver, daemon_factory, tmp_path
):
    dlx = await amqp_channel.declare_exchange(f"{queue_name}.dlx", aio_pika.ExchangeType.FANOUT)
    dead = await amqp_channel.declare_queue(f"{queue_name}.dead", durable=True)
    await dead.bind(dlx)
    await amqp_channel.declare_queue(
        queue_name, durable=True, arguments={"x-dead-letter-exchange": dlx.name}
    )
    daemon = amqp_daemon(daemon_factory, receiver, tmp_path / "d.db", rabbitmq, queue_name)
    daemon.launch()
    await daemon.wait_ready()

    q = queue_name
    await publish(amqp_channel, q, b'{"id": "x-1", "type": ', message_id="bad-json")
    await publish(
        amqp_channel, q, {"id": "x-2", "customer": "acme", "data": {}}, message_id="no-type"
    )
    await publish(amqp_channel, q, {"orderId": "o-3"}, message_id="bare-no-type")
    await publish(amqp_channel, q, [event("x-4"), {**event("x-5"), "data": []}], message_id="batch")
    await publish(amqp_channel, q, event("g-1", order="o-g1"))
    await publish(
        amqp_channel,
        q,
        {"orderId": "o-g2", "fulfillmentStatus": "shipped"},
        message_id="g-2",
        type="Order shipped",
        headers={"customer": "acme"},
    )

    await receiver.wait_events({"g-1", "g-2"})
    letters: list[aio_pika.abc.AbstractIncomingMessage] = []
    deadline = time.monotonic() + 15
    while len(letters) < 4 and time.monotonic() < deadline:
        message = await dead.get(fail=False, timeout=5)
        if message is None:
            await asyncio.sleep(0.1)
            continue
        letters.append(message)
        await message.ack()

    assert sorted(m.message_id or "" for m in letters) == [
        "bad-json",
        "bare-no-type",
        "batch",
        "no-type",
    ]
    assert {m.headers["x-death"][0]["reason"] for m in letters} == {"rejected"}  # type: ignore[index]
    assert sorted(receiver.webhook_ids()) == ["g-1", "g-2"]  # nothing of the rejected batch
    assert await depth(amqp_channel, queue_name) == 0
    logs = daemon.logs()
    assert "amqp message rejected" in logs and '"message_id": "bad-json"' in logs


# stops the broker every RabbitMQ test of the run uses
@pytest.mark.serial
async def test_broker_outage_mid_stream_loses_nothing_and_readyz_says_so(
    rabbitmq, amqp_channel, queue_name, receiver, daemon_factory, tmp_path
):
    await amqp_channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
    daemon = amqp_daemon(daemon_factory, receiver, tmp_path / "o.db", rabbitmq, queue_name)
    daemon.launch()
    await daemon.wait_ready()
    ids = [f"s-{n}" for n in range(800)]
    publisher = asyncio.create_task(publish_stream(rabbitmq.url, queue_name, ids, pause=0.004))
    try:
        await receiver.wait_for(100, timeout=20)
        await asyncio.to_thread(rabbitmq.ctl, "stop_app")
        try:
            assert not publisher.done(), "the stream was over before the outage: it proved nothing"
            outage = await wait_readyz(daemon, 503, timeout=15)
        finally:
            await asyncio.to_thread(rabbitmq.ctl, "start_app")
        await wait_readyz(daemon, 200, timeout=30)
        await asyncio.wait_for(publisher, timeout=60)
    finally:
        publisher.cancel()

    assert outage["sources"] == {"http": True, "amqp": False}
    await receiver.wait_events(set(ids), timeout=40)
    assert all(len(hooks) == 1 for hooks in receiver.webhook_ids().values())
    assert set(await spooled(daemon)) == set(ids)
    assert "amqp connection lost" in daemon.logs()


async def test_two_daemons_share_one_queue_and_a_killed_one_loses_nothing(
    rabbitmq, amqp_channel, queue_name, receiver, daemon_factory, tmp_path
):
    await amqp_channel.declare_queue(queue_name, durable=True)
    first, second = (
        amqp_daemon(daemon_factory, receiver, tmp_path / name, rabbitmq, queue_name, prefetch=4)
        for name in ("one.db", "two.db")
    )
    for daemon in (first, second):
        daemon.launch()
        await daemon.wait_ready()
    ids = [f"t-{n}" for n in range(600)]
    publisher = asyncio.create_task(publish_stream(rabbitmq.url, queue_name, ids, pause=0.004))
    try:
        await receiver.wait_for(100, timeout=20)
        first.signal(signal.SIGKILL)  # its unacknowledged messages go back to the queue
        await first.wait_exit()
        assert not publisher.done(), "the stream was over before the kill: the test proved nothing"
        await asyncio.wait_for(publisher, timeout=60)
    finally:
        publisher.cancel()
    deadline = time.monotonic() + 30
    while await depth(amqp_channel, queue_name) > 0:  # the survivor takes over the rest
        assert time.monotonic() < deadline, "the surviving daemon did not drain the queue"
        await asyncio.sleep(0.2)
    first.launch()  # back on its own spool: what it had acknowledged goes out now
    await first.wait_ready()

    wanted = set(ids)
    await receiver.wait_events(wanted, timeout=40)
    by_first, by_second = await spooled(first), await spooled(second)
    assert by_first and by_second, "one daemon took all the work"
    assert set(by_first) | set(by_second) == wanted
    assert all(by_first[i] == by_second[i] for i in set(by_first) & set(by_second))
    ids = receiver.webhook_ids()
    assert all(len(hooks) == 1 for hooks in ids.values()), "a duplicate changed its webhook-id"
    assert {k: next(iter(v)) for k, v in ids.items()} == {**by_first, **by_second}

    # The same events reaching the other daemon (a redelivery after a crash) keep their ids.
    crossed = sorted(set(by_first) - set(by_second))[:5]
    status, body = await second.post([event(i, order=f"o-{i}") for i in crossed])
    assert status == 202 and sorted(body["accepted"]) == crossed, body
    deadline = time.monotonic() + 15
    while sum(json.loads(r.body)["eventId"] in crossed for r in receiver.requests) < 10:
        assert time.monotonic() < deadline, "the second daemon did not deliver the crossed events"
        await asyncio.sleep(0.1)
    again = await spooled(second)
    assert {i: again[i] for i in crossed} == {i: by_first[i] for i in crossed}
    assert all(len(hooks) == 1 for hooks in receiver.webhook_ids().values())
