"""One AMQP message → the events it carries, validated by the same rules as HTTP intake.

The body is JSON in one of three shapes:

- an event envelope (an object with ``"type"``, ``"data"`` or CloudEvents ``"specversion"``);
- a JSON array of envelopes: a batch, all-or-nothing (one bad item rejects the message);
- a bare order document (any other object): it becomes the envelope's ``data``.

Message properties supply what the body does not say:

=============================  ===============  ==========================================
AMQP property                  envelope field   used when
=============================  ===============  ==========================================
``message_id``                 ``id``           the body has no ``"id"``
``type``                       ``type``         the body is a bare order document
``headers["customer"]``        ``customer``     the body names no customer (``customer``,
                                                CloudEvents ``subject``, ``data.customerId``)
``timestamp``                  ``time``         the body has no ``"time"``
=============================  ===============  ==========================================

Properties never override what the body says, and they do not apply to items of an array.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from postbackd.events import Event, EventRejected, decode_json, parse_event

MAX_EVENTS_PER_MESSAGE = 1000
_ENVELOPE_KEYS = ("type", "data", "specversion")


@dataclass(frozen=True)
class MessageProperties:
    """The AMQP properties that can stand in for envelope fields."""

    message_id: str | None = None
    type: str | None = None
    customer: str | None = None
    timestamp: datetime | None = None

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> MessageProperties:
        headers = message.headers or {}
        return cls(
            message_id=message.message_id or None,
            type=message.type or None,
            customer=_text(headers.get("customer")),
            timestamp=message.timestamp,
        )

    @property
    def time(self) -> str | None:
        if self.timestamp is None:
            return None
        stamp = self.timestamp
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC).isoformat().replace("+00:00", "Z")


def events_from_body(body: bytes, properties: MessageProperties) -> list[Event]:
    """The events in one message body; raises EventRejected naming the field at fault."""
    value = decode_json(body)
    if isinstance(value, list):
        if not value:
            raise EventRejected("empty array: send at least one event")
        if len(value) > MAX_EVENTS_PER_MESSAGE:
            raise EventRejected(
                f"too many events in one message: {len(value)} > {MAX_EVENTS_PER_MESSAGE}"
            )
        return [parse_event(item, prefix=f"[{index}]") for index, item in enumerate(value)]
    if not isinstance(value, dict):
        return [parse_event(value)]
    if any(key in value for key in _ENVELOPE_KEYS):
        return [parse_event(_fill_envelope(value, properties), received=properties.time)]
    return [parse_event(_wrap_document(value, properties), received=properties.time)]


def _fill_envelope(envelope: dict[str, Any], properties: MessageProperties) -> dict[str, Any]:
    filled = dict(envelope)
    if "id" not in filled and properties.message_id is not None:
        filled["id"] = properties.message_id
    if properties.customer is not None and not _names_customer(filled):
        filled["customer"] = properties.customer
    return filled


def _wrap_document(document: dict[str, Any], properties: MessageProperties) -> dict[str, Any]:
    if properties.message_id is None:
        raise EventRejected(
            'the body is a bare order document (no "type" or "data") and the message has '
            "no message_id property: set message_id, or send an event envelope",
            "id",
        )
    if properties.type is None:
        raise EventRejected(
            "the body is a bare order document and the message has no type property: set "
            'type (e.g. "order.shipped"), or send an event envelope',
            "type",
        )
    envelope: dict[str, Any] = {"id": properties.message_id, "type": properties.type}
    if properties.customer is not None:
        envelope["customer"] = properties.customer
    envelope["data"] = document
    return envelope


def _names_customer(envelope: dict[str, Any]) -> bool:
    data = envelope.get("data")
    return (
        envelope.get("customer") is not None
        or ("specversion" in envelope and envelope.get("subject") is not None)
        or (isinstance(data, dict) and data.get("customerId") is not None)
    )


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value is None or value == "":
        return None
    return str(value)
