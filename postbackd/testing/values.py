"""Values a plugin under test receives: events, deliveries, a recording ``submit``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from postbackd.events import Event, parse_event
from postbackd.plugin import Delivery, SpoolUnavailable, SubmitResult
from postbackd.plugins import PluginHost, load_plugins
from postbackd.router import delivery_id
from postbackd.templates import content_type_for
from postbackd.testing.waiting import until


def event_payload(
    event_id: str = "evt-1",
    type: str = "order.shipped",
    *,
    customer: str = "acme",
    order: str = "o-1",
    **data: Any,
) -> dict[str, Any]:
    """An event as a source would receive it (JSON-ready); `data` adds or overrides fields."""
    return {
        "id": event_id,
        "type": type,
        "customer": customer,
        "data": {
            "orderId": order,
            "orderReferenceId": f"ref-{order}",
            "fulfillmentStatus": type.rsplit(".", 1)[-1],
            **data,
        },
    }


def make_event(event_id: str = "evt-1", type: str = "order.shipped", **kwargs: Any) -> Event:
    """A validated `Event`, as plugins and observers receive it."""
    return parse_event(event_payload(event_id, type, **kwargs))


def make_delivery(
    event: Event | None = None,
    *,
    body: bytes | str = b'{"orderId": "o-1"}',
    format: str = "json",
    trigger: str = "test-trigger",
    attempt: int = 1,
    subject: str | None = None,
) -> Delivery:
    """The `Delivery` postbackd hands to ``deliver``, with the id the daemon would give it."""
    event = event or make_event()
    return Delivery(
        id=delivery_id(event.id, trigger),
        event_id=event.id,
        event_type=event.type,
        customer=event.customer,
        trigger=trigger,
        attempt=attempt,
        format=format,
        content_type=content_type_for(format),  # type: ignore[arg-type]
        subject=subject,
        body=body.encode() if isinstance(body, str) else body,
        order_id=event.order_id,
    )


@dataclass
class RecordingSubmit:
    """A ``submit`` for a source under test: records events, answers like the spool.

    ``fail_next(exc, times)`` makes the next calls raise (``SpoolUnavailable`` by default),
    to test that a source does not acknowledge upstream what was not stored.
    """

    events: list[Event] = field(default_factory=list)
    _failures: list[BaseException] = field(default_factory=list)

    async def __call__(self, event: Event) -> SubmitResult:
        if self._failures:
            raise self._failures.pop(0)
        duplicate = any(seen.id == event.id for seen in self.events)
        if not duplicate:
            self.events.append(event)
        return SubmitResult(event.id, duplicate=duplicate, deliveries=0 if duplicate else 1)

    def fail_next(self, exc: BaseException | None = None, times: int = 1) -> None:
        self._failures.extend([exc or SpoolUnavailable("spool unavailable (test)")] * times)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Event]:
        await until(lambda: len(self.events) >= count, timeout, f"{count} submitted events")
        return list(self.events)


def plugin_host(*plugins: ModuleType | object, plugin_dirs: Iterable[Path] = ()) -> PluginHost:
    """Load the built-ins plus `plugins` as the daemon would (checks included), no entry points."""
    return load_plugins(tuple(plugin_dirs), use_entry_points=False, disabled=(), extra=plugins)
