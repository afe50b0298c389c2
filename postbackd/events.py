"""The event envelope, the canonical event types and their aliases, and input validation.

Every source (HTTP, file drop, AMQP, plugins) turns its input into `Event` values through
`parse_events` / `parse_event`, so the rules of DESIGN §4 hold the same everywhere: an error
names the field (``[3].type``, ``data.items[2].fulfillments``) and says what was expected.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from postbackd import jsoncodec

CANONICAL_TYPES: tuple[str, ...] = (
    "order.received",
    "order.failed",
    "order.cancelled",
    "order.returned",
    "order.in_production",
    "order.shipped",
    "order.in_transit",
    "order.delivered",
    "order.package_status_updated",
    "order.delayed",
)

_ALIASES: dict[str, tuple[str, ...]] = {
    "order.received": ("Order received", "Received"),
    "order.failed": ("Order failed",),
    "order.cancelled": ("Order canceled", "Order cancelled"),
    "order.returned": ("Order returned",),
    "order.in_production": ("Order in production", "Order produced", "Produced"),
    "order.shipped": ("Order shipped",),
    "order.in_transit": ("Order in transit",),
    "order.delivered": ("Order delivered",),
    "order.package_status_updated": ("Package Status Updated", "Package updated"),
    "order.delayed": ("Delayed Order", "Order delayed"),
}
SYSTEM_TYPE_PREFIX = "postbackd."
"""The daemon's own events (operational alerts, `postbackd.alerts`): no source may send them."""

SYSTEM_TYPES: tuple[str, ...] = (
    "postbackd.destination_failing",
    "postbackd.destination_recovered",
    "postbackd.delivery_dead",
    "postbackd.reload_rejected",
    "postbackd.source_down",
    "postbackd.source_recovered",
)
SYSTEM_EVENT_ID_PREFIX = "postbackd:"
"""The ids of the daemon's own events; reserved so that no source can pre-empt an alert (an
event with the id of a future alert would make that alert an idempotent duplicate)."""

ALIASES: dict[str, str] = {
    alias.casefold(): canonical for canonical, names in _ALIASES.items() for alias in names
}

MAX_DEPTH = 64
MAX_ID_LENGTH = 200
MAX_TYPE_LENGTH = 200  # every string that names something has a bound: it reaches every log line
MAX_CUSTOMER_LENGTH = 200


class EventRejected(ValueError):
    """Input that is not a valid event; `field` names where (``[3].type``), or is None."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field

    def as_json(self) -> dict[str, str | None]:
        """The JSON body of a 400 answer: ``{"error": ..., "field": ...}``."""
        return {"error": self.message, "field": self.field}


@dataclass(frozen=True)
class Event:
    """One validated order event, as stored in the spool and handed to templates and plugins."""

    id: str
    type: str
    customer: str
    time: str
    data: Mapping[str, Any] = field(hash=False, compare=False)

    @property
    def order_id(self) -> str | None:
        """The order this event is about (``data.orderId``), used for ordering and erasure."""
        value = self.data.get("orderId")
        return None if value is None else str(value)

    def to_dict(self) -> dict[str, Any]:
        """The envelope as JSON-ready data (our own format, whatever the input was)."""
        return {
            "id": self.id,
            "type": self.type,
            "customer": self.customer,
            "time": self.time,
            "data": self.data,
        }

    def to_json(self) -> bytes:
        return jsoncodec.dumps(self.to_dict())


def canonical_type(name: str) -> str:
    """The canonical name of an event type: ``"Order shipped"`` → ``"order.shipped"``.

    Canonical names (any case) and aliases map to the canonical form; any other name is kept as
    written (unknown types are accepted and routed).
    """
    folded = name.strip().casefold()
    if folded in CANONICAL_TYPES:
        return folded
    return ALIASES.get(folded, name.strip())


def type_matches(pattern: str, event_type: str) -> bool:
    """Whether a trigger's event pattern (``order.*``, an alias, a name) matches a type."""
    pattern = canonical_type(pattern)
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(event_type, pattern)
    return pattern == event_type


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decode_json(raw: bytes) -> Any:
    """Parse a request or file body; bad UTF-8, bad JSON and deep nesting are EventRejected."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventRejected(f"body is not valid UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = jsoncodec.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EventRejected(f"malformed JSON: {exc}") from None
    _check_depth(value)
    return value


def parse_events(raw: bytes, *, max_events: int = 1000) -> list[Event]:
    """One event or a JSON array of events; all-or-nothing (the first bad one rejects all)."""
    value = decode_json(raw)
    if isinstance(value, list):
        if not value:
            raise EventRejected("empty array: send at least one event")
        if len(value) > max_events:
            raise EventRejected(f"too many events in one request: {len(value)} > {max_events}")
        received = now_iso()  # one request, one moment of receipt
        return [
            parse_event(item, prefix=f"[{index}]", received=received)
            for index, item in enumerate(value)
        ]
    return [parse_event(value)]


def parse_event(value: Any, *, prefix: str = "", received: str | None = None) -> Event:
    """Validate one decoded envelope (ours, or CloudEvents 1.0 structured mode)."""

    def where(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    if not isinstance(value, dict):
        raise EventRejected(f"expected an event object, got {_kind(value)}", prefix or None)
    cloud_event = "specversion" in value
    event_id = value.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise EventRejected("required: a non-empty string", where("id"))
    if len(event_id) > MAX_ID_LENGTH:
        raise EventRejected(f"longer than {MAX_ID_LENGTH} characters", where("id"))
    if not event_id.isprintable():
        raise EventRejected("must contain only printable characters", where("id"))
    event_type = value.get("type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise EventRejected("required: a non-empty string", where("type"))
    if len(event_type) > MAX_TYPE_LENGTH:
        raise EventRejected(f"longer than {MAX_TYPE_LENGTH} characters", where("type"))
    data = value.get("data")
    if not isinstance(data, dict):
        raise EventRejected(
            "required: an object" if data is None else f"expected an object, got {_kind(data)}",
            where("data"),
        )
    _validate_data(data, where("data"))
    customer = _customer_of(value, data, cloud_event)
    if customer is None:
        raise EventRejected(
            'required: name the customer in "customer"'
            + (', "subject"' if cloud_event else "")
            + " or data.customerId",
            where("customer"),
        )
    if not isinstance(customer, str | int) or isinstance(customer, bool) or str(customer) == "":
        raise EventRejected("expected a non-empty string", where("customer"))
    if len(str(customer)) > MAX_CUSTOMER_LENGTH:
        raise EventRejected(f"longer than {MAX_CUSTOMER_LENGTH} characters", where("customer"))
    event_time = value.get("time")
    if event_time is not None and not isinstance(event_time, str):
        raise EventRejected(f"expected an RFC 3339 string, got {_kind(event_time)}", where("time"))
    return Event(
        id=event_id,
        type=canonical_type(event_type),
        customer=str(customer),
        time=event_time or received or now_iso(),
        data=data,
    )


def _customer_of(value: dict[str, Any], data: dict[str, Any], cloud_event: bool) -> Any:
    for candidate in (
        value.get("customer"),
        value.get("subject") if cloud_event else None,
        data.get("customerId"),
    ):
        if candidate is not None:
            return candidate
    return None


def _validate_data(data: dict[str, Any], where: str) -> None:
    """The order document's shape where templates rely on it: items and fulfillments lists."""
    items = data.get("items")
    if items is None:
        return
    if not isinstance(items, list):
        raise EventRejected(f"expected a list, got {_kind(items)}", f"{where}.items")
    for index, item in enumerate(items):
        item_where = f"{where}.items[{index}]"
        if not isinstance(item, dict):
            raise EventRejected(f"expected an object, got {_kind(item)}", item_where)
        fulfillments = item.get("fulfillments")
        if fulfillments is None:
            continue
        if not isinstance(fulfillments, list):
            raise EventRejected(
                f"expected a list, got {_kind(fulfillments)}", f"{item_where}.fulfillments"
            )
        for f_index, fulfillment in enumerate(fulfillments):
            if not isinstance(fulfillment, dict):
                raise EventRejected(
                    f"expected an object, got {_kind(fulfillment)}",
                    f"{item_where}.fulfillments[{f_index}]",
                )


def _check_depth(value: Any) -> None:
    """Reject documents nested deeper than MAX_DEPTH, level by level, without recursion."""
    level = [value] if type(value) in _CONTAINERS else []
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            raise EventRejected(f"JSON nested deeper than {MAX_DEPTH} levels")
        below: list[Any] = []
        for node in level:
            children = node.values() if type(node) is dict else node
            below += [child for child in children if type(child) in _CONTAINERS]
        level = below
        depth += 1


_CONTAINERS = frozenset({dict, list})  # what a JSON decoder builds


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
