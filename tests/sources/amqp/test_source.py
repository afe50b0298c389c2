"""The AMQP source against a real RabbitMQ broker (started by scripts/rabbitmq.sh)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from postbackd import jsoncodec
from postbackd.events import EventRejected
from postbackd.sources.amqp.message import MessageProperties, events_from_body
from postbackd.sources.amqp.source import AmqpSource
from tests.sources.amqp.rabbitmq_fixtures import Broker, amqp_channel, queue_name, rabbitmq
from tests.sources.source_collector import Collector, eventually

__all__ = ["amqp_channel", "queue_name", "rabbitmq"]

Channel = aio_pika.abc.AbstractChannel
MakeSource = Callable[..., AmqpSource]


def envelope(index: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"evt-{index}",
        "type": "order.shipped",
        "customer": "acme",
        "data": {"orderId": f"order-{index}"},
        **extra,
    }


async def publish(
    channel: Channel, queue: str, body: bytes | Mapping[str, Any], **props: Any
) -> None:
    raw = body if isinstance(body, bytes) else jsoncodec.dumps(body)
    message = aio_pika.Message(raw, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **props)
    await channel.default_exchange.publish(message, routing_key=queue)


async def publish_events(channel: Channel, queue: str, indexes: range) -> None:
    await asyncio.gather(*(publish(channel, queue, envelope(i)) for i in indexes))


async def depth(channel: Channel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    count = declared.declaration_result.message_count
    assert count is not None
    return count


@pytest.fixture
async def make_source(rabbitmq: Broker) -> AsyncIterator[MakeSource]:
    """Builds AmqpSources on the test broker; stops every one at teardown."""
    sources: list[AmqpSource] = []

    def make(queue: str, **settings: Any) -> AmqpSource:
        source = AmqpSource({"url": rabbitmq.url, "queue": queue, **settings})
        sources.append(source)
        return source

    yield make
    await asyncio.gather(*(source.stop() for source in sources))


async def started(source: AmqpSource, collector: Collector) -> AmqpSource:
    await source.start(collector)
    await eventually(lambda: source.ready, timeout=15, what="source ready")
    return source


async def test_a_thousand_events_are_all_submitted_and_the_queue_ends_empty(
    amqp_channel: Channel, queue_name: str, make_source: MakeSource
) -> None:
    await amqp_channel.declare_queue(queue_name, durable=True)
    await publish_events(amqp_channel, queue_name, range(1000))
    collector = Collector()
    source = await started(make_source(queue_name), collector)

    await collector.wait_count(1000, timeout=30)
    await source.stop()

    assert collector.ids == {f"evt-{i}" for i in range(1000)}
    assert await depth(amqp_channel, queue_name) == 0


async def test_malformed_and_invalid_messages_are_dead_lettered(
    amqp_channel: Channel, queue_name: str, make_source: MakeSource
) -> None:
    dlx = await amqp_channel.declare_exchange(f"{queue_name}.dlx", aio_pika.ExchangeType.FANOUT)
    dead = await amqp_channel.declare_queue(f"{queue_name}.dead", durable=True)
    await dead.bind(dlx)
    collector = Collector()
    await started(make_source(queue_name, declare=True, dead_letter_exchange=dlx.name), collector)

    await publish(amqp_channel, queue_name, b"{not json", message_id="bad-json")
    await publish(
        amqp_channel, queue_name, {"id": "evt-x", "customer": "a", "data": {}}, message_id="no-type"
    )
    await publish(amqp_channel, queue_name, envelope(1))
    await collector.wait_count(1)

    seen: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def dead_lettered() -> None:
        for _ in range(100):
            message = await dead.get(fail=False, timeout=5)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            seen.append(message)
            await message.ack()
            if len(seen) == 2:
                return

    await asyncio.wait_for(dead_lettered(), timeout=15)
    assert sorted(m.message_id or "" for m in seen) == ["bad-json", "no-type"]
    assert seen[0].headers["x-death"]
    assert collector.ids == {"evt-1"}


async def test_spool_unavailable_requeues_the_message_until_it_is_stored(
    amqp_channel: Channel, queue_name: str, make_source: MakeSource
) -> None:
    await amqp_channel.declare_queue(queue_name, durable=True)
    collector = Collector()
    collector.unavailable_for(2)
    source = await started(make_source(queue_name), collector)

    await publish(amqp_channel, queue_name, envelope(7))
    await collector.wait_count(1, timeout=15)
    await source.stop()

    assert collector.unavailable_calls == 2
    assert collector.calls == 3
    assert collector.ids == {"evt-7"}
    assert await depth(amqp_channel, queue_name) == 0


# stops the broker every RabbitMQ test of the run uses
@pytest.mark.serial
async def test_a_broker_restart_mid_stream_loses_nothing(
    rabbitmq: Broker, amqp_channel: Channel, queue_name: str, make_source: MakeSource
) -> None:
    collector = Collector(delay=0.02)
    source = await started(
        make_source(
            queue_name,
            declare=True,
            queue_type="quorum",
            delivery_limit=1000,
            prefetch=8,
            reconnect_interval="0.5s",
        ),
        collector,
    )
    await publish_events(amqp_channel, queue_name, range(600))
    await collector.wait_count(50)

    await asyncio.to_thread(rabbitmq.ctl, "stop_app")
    try:
        await eventually(lambda: not source.ready, timeout=10, what="not ready while stopped")
    finally:
        await asyncio.to_thread(rabbitmq.ctl, "start_app")
    await eventually(lambda: source.ready, timeout=30, what="ready again after start_app")

    publisher = await aio_pika.connect(rabbitmq.url, timeout=10)
    async with publisher:
        await publish_events(await publisher.channel(), queue_name, range(600, 700))
    await collector.wait_count(700, timeout=40)
    assert collector.ids == {f"evt-{i}" for i in range(700)}


async def test_two_sources_on_one_queue_share_the_work(
    amqp_channel: Channel, queue_name: str, make_source: MakeSource
) -> None:
    await amqp_channel.declare_queue(queue_name, durable=True)
    first, second = Collector(delay=0.01), Collector(delay=0.01)
    await started(make_source(queue_name, prefetch=4), first)
    await started(make_source(queue_name, prefetch=4), second)

    await publish_events(amqp_channel, queue_name, range(200))
    await first.wait_for(lambda: len(first.ids | second.ids) == 200, timeout=30)

    assert first.ids and second.ids
    assert first.ids | second.ids == {f"evt-{i}" for i in range(200)}


async def test_message_properties_stand_in_for_envelope_fields(
    amqp_channel: Channel, queue_name: str, make_source: MakeSource
) -> None:
    await amqp_channel.declare_queue(queue_name, durable=True)
    collector = Collector()
    await started(make_source(queue_name), collector)
    stamp = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)

    await publish(
        amqp_channel,
        queue_name,
        {"orderId": "o-1", "fulfillmentStatus": "shipped"},
        message_id="bare-1",
        type="Order shipped",
        headers={"customer": "acme"},
        timestamp=stamp,
    )
    await publish(
        amqp_channel,
        queue_name,
        {"type": "order.delivered", "data": {"orderId": "o-2"}},
        message_id="env-2",
        headers={"customer": "globex"},
    )
    await publish(
        amqp_channel,
        queue_name,
        envelope(3, customer="initech"),
        message_id="ignored",
        headers={"customer": "ignored"},
    )
    await collector.wait_count(3)

    bare = collector.events["bare-1"]
    assert (bare.type, bare.customer, bare.time) == (
        "order.shipped",
        "acme",
        "2026-11-28T10:00:00Z",
    )
    assert dict(bare.data) == {"orderId": "o-1", "fulfillmentStatus": "shipped"}
    assert (collector.events["env-2"].type, collector.events["env-2"].customer) == (
        "order.delivered",
        "globex",
    )
    assert collector.events["evt-3"].customer == "initech"


async def test_a_missing_queue_is_waited_for_not_ready_meanwhile(
    amqp_channel: Channel, queue_name: str, make_source: MakeSource
) -> None:
    collector = Collector()
    source = make_source(queue_name, reconnect_interval="0.2s")
    await source.start(collector)
    await asyncio.sleep(0.5)
    assert not source.ready

    await amqp_channel.declare_queue(queue_name, durable=True)
    await publish(amqp_channel, queue_name, envelope(1))
    await collector.wait_count(1, timeout=15)
    assert source.ready


async def test_a_broker_down_at_start_does_not_block_or_crash() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = AmqpSource(
        {"url": f"amqp://guest:guest@127.0.0.1:{port}/", "queue": "q", "reconnect_interval": "0.1s"}
    )
    began = time.monotonic()
    await source.start(Collector())
    assert time.monotonic() - began < 1
    await asyncio.sleep(0.5)
    assert not source.ready
    await asyncio.wait_for(source.stop(), timeout=5)


def test_bare_documents_need_message_id_and_type() -> None:
    body = jsoncodec.dumps({"orderId": "o-1"})
    with pytest.raises(EventRejected) as missing_id:
        events_from_body(body, MessageProperties(type="order.shipped", customer="acme"))
    assert missing_id.value.field == "id"
    with pytest.raises(EventRejected) as missing_type:
        events_from_body(body, MessageProperties(message_id="m-1", customer="acme"))
    assert missing_type.value.field == "type"


def test_an_array_body_is_all_or_nothing() -> None:
    body = jsoncodec.dumps([envelope(1), {"id": "x", "customer": "a", "data": {}}])
    with pytest.raises(EventRejected) as rejected:
        events_from_body(body, MessageProperties())
    assert rejected.value.field == "[1].type"
    assert [
        e.id
        for e in events_from_body(jsoncodec.dumps([envelope(1), envelope(2)]), MessageProperties())
    ] == ["evt-1", "evt-2"]


def test_settings_report_every_problem_by_key() -> None:
    with pytest.raises(ValueError) as bad:
        AmqpSource({"prefetch": 0, "exchange": "orders", "queu": "x"})
    text = str(bad.value)
    assert '[sources.amqp]: missing required key "queue": the name of the queue' in text
    assert "[sources.amqp] prefetch: must be at least 1, got 0" in text
    assert "[sources.amqp] exchange: only used with declare = true" in text
    assert '[sources.amqp] queu: unknown key "queu" (did you mean "queue"?)' in text
    with pytest.raises(ValueError, match="delivery_limit: only quorum queues have one"):
        AmqpSource({"queue": "q", "declare": True, "delivery_limit": 5})
    with pytest.raises(ValueError, match=r"delivery_limit: expected -1 \(no limit\) or a whole"):
        AmqpSource({"queue": "q", "declare": True, "queue_type": "quorum", "delivery_limit": 0})
    settings = AmqpSource(
        {
            "queue": "q",
            "declare": True,
            "queue_type": "quorum",
            "dead_letter_exchange": "dlx",
            "delivery_limit": -1,
            "url": "amqp://u:secret@broker/",
        }
    ).settings
    assert settings.queue_arguments() == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "dlx",
        "x-delivery-limit": -1,
    }
    assert "secret" not in settings.safe_url
