"""The AMQP source: consumes order events from a RabbitMQ queue, at least once.

Several daemons may consume one queue as competing consumers (DESIGN §8); each acks a message
only after its events are committed to that daemon's spool, so a daemon that dies loses nothing:
the broker hands its unacknowledged messages to the others.

``[sources.amqp]`` settings:

- ``url`` (default ``amqp://guest:guest@localhost/``), ``queue`` (required), ``prefetch``
  (default 64: messages in flight, unacknowledged, at once).
- ``declare`` (default false): without it the queue is consumed as it exists (a passive
  declare checks that it does); with it the queue is declared durable, of ``queue_type``
  ``"classic"`` or ``"quorum"``, with ``dead_letter_exchange`` as its
  ``x-dead-letter-exchange``, and bound to ``exchange`` with ``routing_key`` (default: the
  queue's name) when ``exchange`` is given. The exchange itself must exist. ``delivery_limit``
  (quorum queues) sets ``x-delivery-limit``; on RabbitMQ 4.x, whose quorum queues default to a
  limit of 20, ``-1`` lifts it so that requeues while a spool is unavailable cannot drop a message.
- ``reconnect_interval`` (default ``"2s"``): the pause between reconnection attempts.

What happens to a message:

- its events are submitted → ack;
- the spool cannot store now (``SpoolUnavailable``) → nack with requeue after a short pause that
  grows while the spool stays unavailable (0.5 s doubling up to 5 s), so nothing spins;
- malformed JSON or an invalid event (``EventRejected``) → reject without requeue: the broker
  dead-letters it when the queue has a dead-letter exchange, else drops it. Logged with the
  message_id and the reason.

Up to ``prefetch`` messages are handled at once (the spool commits them in groups), yet the
statuses of one order are stored in the order the queue delivered them, so ``ordered = true``
triggers keep their promise (`postbackd.sources.amqp.order`).

The body and property mapping (bare order documents, ``message_id``, ``type``,
``headers["customer"]``) is described in `postbackd.sources.amqp.message`.

Connection loss: aio-pika's robust connection reconnects and restores the channel, prefetch and
consumer; ``ready`` is False meanwhile. Messages in flight when the connection drops are
redelivered by the broker (ingest is idempotent on event id). A broker that is down at
``start()`` does not block the daemon: connecting goes on in the background with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from postbackd.events import Event, EventRejected
from postbackd.logs import get_logger
from postbackd.plugin import (
    PluginContext,
    SettingsReader,
    SpoolUnavailable,
    Submit,
    count_rejected,
    read_mapping,
)
from postbackd.sources.amqp.message import MessageProperties, events_from_body
from postbackd.sources.amqp.order import EarlierNotStored, OrderTurns, Turn
from postbackd.sources.amqp.settings import AmqpSettings

log = get_logger("postbackd.sources.amqp")

CONNECT_TIMEOUT = 10.0
MAX_CONNECT_BACKOFF = 30.0
NACK_DELAY_FIRST = 0.5
NACK_DELAY_MAX = 5.0
STOP_GRACE = 10.0


class AmqpSource:
    """Consumes ``[sources.amqp] queue`` and submits each message's events to the spool."""

    def __init__(self, settings: Mapping[str, Any], context: PluginContext | None = None) -> None:
        self.settings = read_mapping(self.read_settings, settings, "[sources.amqp]")
        self.context = context
        self._submit: Submit | None = None
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._connector: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._connected = False
        self._unavailable_streak = 0
        self._cannot_consume: str | None = None  # why the last try to consume failed
        self._turns = OrderTurns()

    @classmethod
    def read_settings(cls, reader: SettingsReader) -> AmqpSettings:
        return AmqpSettings.read(reader)

    @property
    def ready(self) -> bool:
        """True while connected to the broker and consuming the queue."""
        connection = self._connection
        return (
            self._connected
            and self._consumer_tag is not None
            and connection is not None
            and not connection.is_closed
        )

    @property
    def problem(self) -> str | None:
        """Why the source is not consuming, for /readyz and the source_down alert."""
        return None if self.ready else self._cannot_consume

    async def start(self, submit: Submit) -> None:
        """Begin connecting and consuming in the background; returns at once."""
        self._submit = submit
        self._stopping.clear()
        self._connector = asyncio.create_task(self._connect_until_consuming(), name="amqp-connect")

    async def stop(self) -> None:
        """Stop consuming, let messages in hand finish (bounded), close the connection.

        Messages not acknowledged by then go back to the queue when the connection closes.
        """
        self._stopping.set()
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
            self._connector = None
        queue, tag = self._queue, self._consumer_tag
        self._consumer_tag = None
        if queue is not None and tag is not None and self._connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), timeout=5)
        if self._handlers:
            _done, pending = await asyncio.wait(set(self._handlers), timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "amqp stop: messages still in hand, left to the broker to redeliver",
                    count=len(pending),
                )
                await asyncio.gather(*pending, return_exceptions=True)
        connection, self._connection = self._connection, None
        self._connected = False
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
        log.info("amqp source stopped", queue=self.settings.queue)

    # ------------------------------------------------------------ connecting

    async def _connect_until_consuming(self) -> None:
        delay = self.settings.reconnect_interval
        while not self._stopping.is_set():
            try:
                await self._connect_and_consume()
                self._cannot_consume = None
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._cannot_consume = f"cannot consume: {_describe(exc, self.settings)}"
                log.warning(
                    "amqp: cannot consume; retrying",
                    url=self.settings.safe_url,
                    queue=self.settings.queue,
                    error=_describe(exc, self.settings),
                    retry_in=round(delay, 1),
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            delay = min(delay * 2, MAX_CONNECT_BACKOFF)

    async def _connect_and_consume(self) -> None:
        connection = await aio_pika.connect_robust(
            self.settings.url,
            timeout=CONNECT_TIMEOUT,
            reconnect_interval=self.settings.reconnect_interval,
            client_properties={"connection_name": f"postbackd {self.settings.queue}"},
        )
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.settings.prefetch)
            queue = await self._declare(channel)
            connection.close_callbacks.add(self._on_connection_lost)
            connection.reconnect_callbacks.add(self._on_reconnected)
            self._connection, self._queue = connection, queue
            self._connected = True
            self._consumer_tag = await queue.consume(self._on_message)
        except BaseException:
            self._connection = self._queue = None
            self._connected = False
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        log.info(
            "amqp source consuming",
            url=self.settings.safe_url,
            queue=self.settings.queue,
            prefetch=self.settings.prefetch,
        )

    async def _declare(self, channel: AbstractChannel) -> AbstractQueue:
        settings = self.settings
        if not settings.declare:
            return await channel.declare_queue(settings.queue, passive=True)
        queue = await channel.declare_queue(
            settings.queue, durable=True, arguments=settings.queue_arguments()
        )
        if settings.exchange is not None:
            await queue.bind(settings.exchange, routing_key=settings.routing_key)
        return queue

    def _on_connection_lost(self, _sender: Any, exc: BaseException | None = None) -> None:
        if self._connected and not self._stopping.is_set():
            log.warning(
                "amqp connection lost; reconnecting",
                url=self.settings.safe_url,
                error=str(exc) if exc else None,
            )
            lost = exc or "closed"
            self._cannot_consume = f"connection to the broker lost ({lost}); reconnecting"
        self._connected = False

    def _on_reconnected(self, _sender: Any) -> None:
        self._connected = True
        log.info("amqp reconnected; consuming again", queue=self.settings.queue)

    # ------------------------------------------------------------ messages

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        """Read the message and take its turn now, in delivery order; then handle it in a task
        of our own, so a channel closing cannot cancel a submit."""
        properties = MessageProperties.of(message)
        try:
            events = events_from_body(message.body, properties)
        except EventRejected as exc:
            await self._reject(message, properties, exc)
            return
        turn = self._turns.take(events)
        task = asyncio.create_task(self._handle(message, properties, events, turn))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        task.add_done_callback(lambda _task: turn.release(stored=False))  # if it never ran

    async def _handle(
        self,
        message: AbstractIncomingMessage,
        properties: MessageProperties,
        events: list[Event],
        turn: Turn,
    ) -> None:
        assert self._submit is not None
        try:
            async with turn:
                for event in events:
                    await self._submit(event)
        except EventRejected as exc:  # the Submit contract allows it; intake does not raise it
            await self._reject(message, properties, exc)
        except (SpoolUnavailable, EarlierNotStored) as exc:
            await self._requeue_later(message, properties, str(exc))
        except Exception as exc:
            log.exception("amqp submit failed; message requeued", message_id=properties.message_id)
            await self._requeue_later(message, properties, f"{type(exc).__name__}: {exc}")
        else:
            if self._unavailable_streak:
                log.info(
                    "amqp: storing again",
                    queue=self.settings.queue,
                    requeued=self._unavailable_streak,
                )
            self._unavailable_streak = 0
            await self._settle(message, "ack", properties)

    async def _reject(
        self, message: AbstractIncomingMessage, properties: MessageProperties, exc: EventRejected
    ) -> None:
        log.warning(
            "amqp message rejected",
            queue=self.settings.queue,
            message_id=properties.message_id,
            error=str(exc),
            dead_letter=self.settings.dead_letter_exchange,
        )
        count_rejected(self._submit)
        await self._settle(message, "reject", properties)

    async def _requeue_later(
        self, message: AbstractIncomingMessage, properties: MessageProperties, reason: str
    ) -> None:
        """Nack with requeue after a pause; only the first of a run of these is a warning.

        Every message in hand meets the same cause (a full disk, or intake closed at shutdown),
        so one warning per run says it; the rest are logged at debug level.
        """
        delay = min(NACK_DELAY_FIRST * 2**self._unavailable_streak, NACK_DELAY_MAX)
        self._unavailable_streak += 1
        fields = {
            "queue": self.settings.queue,
            "message_id": properties.message_id,
            "reason": reason,
            "requeue_in": delay,
        }
        if self._unavailable_streak == 1:
            log.warning("amqp: cannot store now; messages are requeued until it can", **fields)
        else:
            log.debug("amqp: cannot store now; message requeued", **fields)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        await self._settle(message, "nack", properties)

    async def _settle(
        self, message: AbstractIncomingMessage, how: str, properties: MessageProperties
    ) -> None:
        try:
            if how == "ack":
                await message.ack()
            elif how == "nack":
                await message.nack(requeue=True)
            else:
                await message.reject(requeue=False)
        except Exception as exc:
            # The channel closed under us: the broker redelivers the message, and a repeat of
            # an event already stored is recognised by its id.
            log.info(
                "amqp: could not settle message; the broker will redeliver it",
                action=how,
                message_id=properties.message_id,
                error=str(exc) or repr(exc),
            )


def _describe(exc: BaseException, settings: AmqpSettings) -> str:
    text = str(exc) or type(exc).__name__
    if "NOT_FOUND" in text and "queue" in text and not settings.declare:
        return (
            f"{text}: queue {settings.queue!r} does not exist on the broker; create it "
            "there, or set declare = true in [sources.amqp]"
        )
    if "PRECONDITION_FAILED" in text:
        return (
            f"{text}: the queue exists with other arguments than [sources.amqp] declares "
            "(queue_type, dead_letter_exchange); align them or set declare = false"
        )
    return text
