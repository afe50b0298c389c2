"""Event → deliveries: find the customer's active triggers that match, render their payloads.

The payload is fixed here, at routing time: what is rendered is what is stored, retried and
logged. A render failure is not an exception for the caller — it becomes a delivery in state
`failed` carrying the message, so it shows in the request log like any other postback.

Templates that read ``changes`` compare the event with its order's previous one; the caller
(intake) fetches that event only when `needs_previous` says so, and `route` works the
changes out once for all the event's triggers.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from postbackd.batching import window_key
from postbackd.changes import compute_changes
from postbackd.config import Config, Trigger
from postbackd.events import Event, type_matches
from postbackd.spool import DeliveryState, NewDelivery
from postbackd.templates import Rendered, RenderError, TemplateEngine, render_budget

# Fixed forever: delivery ids must be the same on every server and every version, so that a
# broker redelivering an event elsewhere yields the same `webhook-id`.
DELIVERY_NAMESPACE = uuid.UUID("8f3c2b9e-5d1a-4c6e-9b7a-2f0d4e6a1c53")
MATCH_CACHE_LIMIT = 65536  # (customer, event type) pairs remembered per generation


def delivery_id(event_id: str, trigger_name: str) -> str:
    """The stable id of the delivery of `event_id` through `trigger_name` (a UUIDv5).

    Exactly ``str(uuid.uuid5(DELIVERY_NAMESPACE, f"{event_id}\\x00{trigger_name}"))``, without
    building the UUID object (this runs for every delivery).
    """
    name = DELIVERY_NAMESPACE.bytes + f"{event_id}\x00{trigger_name}".encode()
    digest = bytearray(hashlib.sha1(name, usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@dataclass(frozen=True)
class RenderOutcome:
    """A rendered payload, or the error that prevented it."""

    rendered: Rendered | None
    error: RenderError | None


def destination_of(plugin: Any, trigger: Trigger) -> str:
    """The peer a trigger's postbacks go to (the plugin's ``destination(options)``).

    It keys the per-destination concurrency bound and the circuit breaker; a plugin without
    the method is one destination per plugin name.
    """
    describe = getattr(plugin, "destination", None)
    if describe is None:
        return f"{trigger.delivery}:"
    try:
        return str(describe(trigger.options))
    except Exception:
        return f"{trigger.delivery}:"


class Router:
    """Routes events with one configuration generation; rebuilt on every reload."""

    def __init__(
        self, config: Config, engine: TemplateEngine, deliveries: Mapping[str, Any]
    ) -> None:
        self.config = config
        self.engine = engine
        self._destinations = {
            name: destination_of(deliveries.get(trigger.delivery), trigger)
            for name, trigger in config.triggers.items()
        }
        by_customer: dict[str, list[Trigger]] = defaultdict(list)
        for trigger in config.triggers.values():
            by_customer[trigger.customer].append(trigger)
        self._triggers = {customer: tuple(ts) for customer, ts in by_customer.items()}
        self._matching: dict[tuple[str, str], tuple[Trigger, ...]] = {}

    def triggers_at(self, destination: str) -> list[Trigger]:
        """The triggers whose postbacks go to `destination` (what an alert about it names)."""
        return [
            self.config.triggers[name]
            for name, found in self._destinations.items()
            if found == destination
        ]

    def matching_triggers(self, event: Event) -> list[Trigger]:
        """The customer's active triggers whose event patterns match the event's type."""
        key = (event.customer, event.type)
        found = self._matching.get(key)
        if found is None:
            found = tuple(
                trigger
                for trigger in self._triggers.get(event.customer, ())
                if trigger.active and any(type_matches(p, event.type) for p in trigger.events)
            )
            if len(self._matching) >= MATCH_CACHE_LIMIT:
                self._matching.clear()
            self._matching[key] = found
        return list(found)

    def uses_changes(self, trigger: Trigger) -> bool:
        """Whether the trigger's template reads ``changes``."""
        return self.engine.uses_changes(trigger.template)

    def needs_previous(self, event: Event) -> bool:
        """Whether routing `event` needs its order's previous event: it has an order id and a
        matching trigger's template reads ``changes``."""
        return event.order_id is not None and any(
            self.uses_changes(trigger) for trigger in self.matching_triggers(event)
        )

    def render(
        self, trigger: Trigger, event: Event, previous: Mapping[str, Any] | None = None
    ) -> RenderOutcome:
        """Render one trigger's payload; `previous` is the order's previous event envelope
        (None: the event is taken as its order's first)."""
        changes = None
        if self.uses_changes(trigger):
            changes = compute_changes(previous, event.to_dict()).as_context()
        return self._render(trigger, event, changes)

    def _render(
        self, trigger: Trigger, event: Event, changes: Mapping[str, Any] | None
    ) -> RenderOutcome:
        customer = self.config.customers.get(event.customer)
        try:
            with render_budget():
                rendered = self.engine.render(trigger.template, event, customer, changes)
            return RenderOutcome(rendered, None)
        except RenderError as exc:
            return RenderOutcome(None, exc)

    def route(self, event: Event, previous: Mapping[str, Any] | None = None) -> list[NewDelivery]:
        """The event's deliveries, rendered; `previous` as for `render` (fetched by the caller
        only when `needs_previous`)."""
        triggers = self.matching_triggers(event)
        changes = None
        if any(self.uses_changes(trigger) for trigger in triggers):
            changes = compute_changes(previous, event.to_dict()).as_context()
        return [self.new_delivery(trigger, event, changes) for trigger in triggers]

    def new_delivery(
        self, trigger: Trigger, event: Event, changes: Mapping[str, Any] | None = None
    ) -> NewDelivery:
        outcome = self._render(trigger, event, changes)
        rendered = outcome.rendered
        template = self.engine.template(trigger.template)
        window = None
        if trigger.batch is not None and rendered is not None:
            # a batching trigger's delivery waits for the end of its window, then goes out in
            # that window's file (postbackd.batching); it is never attempted on its own
            end = trigger.batch.end_after(time.time())
            window = (window_key(trigger.name, end), end)
        return NewDelivery(
            id=delivery_id(event.id, trigger.name),
            trigger=trigger.name,
            plugin=trigger.delivery,
            customer=event.customer,
            event_type=event.type,
            order_id=event.order_id,
            format=rendered.format if rendered else template.format,
            content_type=(
                rendered.content_type if rendered else self.engine.content_type_for(template.format)
            ),
            subject=rendered.subject if rendered else None,
            body=rendered.body if rendered else None,
            render_error=str(outcome.error) if outcome.error else None,
            state=DeliveryState.PENDING if rendered else DeliveryState.FAILED,
            ordered=trigger.ordered,
            supersede=trigger.supersede,
            destination=self._destinations.get(trigger.name),
            next_attempt_at=window[1] if window else None,
            batch_window=window[0] if window else None,
        )
