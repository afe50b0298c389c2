"""The one way into the spool: route an event, commit it with its deliveries, then answer.

Every source — HTTP, file drop, AMQP, a plugin — gets its `submit` from here, so the
guarantees of DESIGN §1 hold for all of them: the caller hears "accepted" only after the
commit, the same event id twice yields one set of deliveries, and an event that matches
nothing is still recorded, logged and counted.

A source also reports what it refused before there was an event to submit (malformed JSON,
a wrong token, a body too large) through ``submit.rejected(reason)``, so
``postbackd_events_rejected_total{source,reason}`` counts every refusal, whatever the source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from postbackd.events import Event
from postbackd.generation import Generation
from postbackd.logs import get_logger
from postbackd.metrics import Metrics
from postbackd.plugin import SpoolUnavailable, SubmitResult
from postbackd.spool import NewDelivery, Spool

log = get_logger("postbackd.intake")

RejectReason = Literal["invalid", "unauthorized", "too_large", "unavailable"]
"""Why a source refused input; the ``reason`` label of postbackd_events_rejected_total."""


class Intake:
    def __init__(
        self,
        spool: Spool,
        current: Callable[[], Generation],
        metrics: Metrics,
        on_committed: Callable[[Event], None],
    ) -> None:
        self.spool = spool
        self.current = current
        self.metrics = metrics
        self.on_committed = on_committed
        self.closed = False

    def submitter(self, source: str) -> SourceSubmit:
        """The `submit` callable handed to a source plugin."""
        return SourceSubmit(self, source)

    def rejected(self, source: str, reason: RejectReason, count: int = 1) -> None:
        """Count input a source refused (`count` events, or 1 for a request it could not read)."""
        self.metrics.events_rejected.labels(source, reason).inc(count)

    async def submit(self, event: Event, *, source: str) -> SubmitResult:
        (result,) = await self.submit_many([event], source=source)
        return result

    async def submit_many(self, events: Sequence[Event], *, source: str) -> list[SubmitResult]:
        """Route and commit a batch in one spool write: all are stored, or none (raises)."""
        if self.closed:
            self.rejected(source, "unavailable", len(events))
            raise SpoolUnavailable("postbackd is shutting down; send the event again later")
        generation = self.current()
        try:
            routed = await self._route(generation, events)
            outcomes = await self.spool.submit_many(routed, source=source)
        except SpoolUnavailable as exc:
            self.rejected(source, "unavailable", len(events))
            for event in events:
                log.error(
                    "event not stored",
                    event_id=event.id,
                    customer=event.customer,
                    source=source,
                    error=str(exc),
                )
            raise
        self.metrics.events_received.labels(source).inc(len(events))
        return [
            self._stored(generation, event, deliveries, outcome.duplicate, source)
            for (event, deliveries), outcome in zip(routed, outcomes, strict=True)
        ]

    async def _route(
        self, generation: Generation, events: Sequence[Event]
    ) -> list[tuple[Event, list[NewDelivery]]]:
        """Route each event, with its order's previous event where a template reads ``changes``.

        The previous event of an order is the batch's own earlier event of that order, else
        the spool's last stored one; the spool is asked only for events that need it.
        """
        router = generation.router
        routed: list[tuple[Event, list[NewDelivery]]] = []
        earlier: dict[tuple[str, str], Event] = {}
        for event in events:
            order_id = event.order_id
            previous = None
            if order_id is not None:
                before = earlier.get((event.customer, order_id))
                earlier[(event.customer, order_id)] = event
                if router.needs_previous(event):
                    previous = (
                        before.to_dict()
                        if before is not None
                        else await self.spool.previous_event(event.customer, order_id, event.id)
                    )
            routed.append((event, router.route(event, previous)))
        return routed

    def _stored(
        self,
        generation: Generation,
        event: Event,
        deliveries: Sequence[NewDelivery],
        duplicate: bool,
        source: str,
    ) -> SubmitResult:
        """Log (and count) what became of one committed event."""
        if duplicate:
            log.info("event duplicate", event_id=event.id, customer=event.customer, source=source)
            return SubmitResult(event.id, duplicate=True, deliveries=0)
        if not deliveries:
            self.metrics.events_unmatched.inc()
            known = event.customer in generation.config.customers
            log.warning(
                "event matched no trigger",
                event_id=event.id,
                customer=event.customer,
                type=event.type,
                source=source,
                reason="no active trigger of this customer matches the event type"
                if known
                else "the customer is not configured",
            )
        else:
            for delivery in deliveries:
                log.info(
                    "delivery queued",
                    event_id=event.id,
                    delivery_id=delivery.id,
                    customer=event.customer,
                    trigger=delivery.trigger,
                    state=str(delivery.state),
                )
        self.on_committed(event)
        return SubmitResult(event.id, duplicate=False, deliveries=len(deliveries))


class SourceSubmit:
    """A source's `submit` (see `postbackd.plugin.Submit`), plus `rejected(reason)` to count."""

    def __init__(self, intake: Intake, source: str) -> None:
        self.intake = intake
        self.source = source

    async def __call__(self, event: Event) -> SubmitResult:
        return await self.intake.submit(event, source=self.source)

    async def many(self, events: Sequence[Event]) -> list[SubmitResult]:
        """A batch in one commit (see `postbackd.plugin.submit_many`)."""
        return await self.intake.submit_many(events, source=self.source)

    def rejected(self, reason: RejectReason, count: int = 1) -> None:
        self.intake.rejected(self.source, reason, count)
