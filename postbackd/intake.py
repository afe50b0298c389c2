"""The one way into the spool: route an event, commit it with its deliveries, then answer.

Every source — HTTP, file drop, AMQP, a plugin — gets its `submit` from here, so the
guarantees of DESIGN §1 hold for all of them: the caller hears "accepted" only after the
commit, the same event id twice yields one set of deliveries, and an event that matches
nothing is still recorded, logged and counted.

The same transaction starts and cancels the orders' ``[[sla]]`` timers (`postbackd.sla`): the
event a rule waits after starts one, an event it expects cancels it — a timer is never stored
without its event, nor an event without its timer.

A source also reports what it refused before there was an event to submit (malformed JSON,
a wrong token, a body too large) through ``submit.rejected(reason)``, so
``postbackd_events_rejected_total{source,reason}`` counts every refusal, whatever the source.

Routing renders templates, whose cost grows with the event: it runs on a small pool of threads
of its own (RENDER_THREADS), never on the event loop, so ``/healthz`` and other requests are
answered whatever one event carries; each render is bounded in time (`render_budget`). An event
larger than MAX_EVENT_BYTES, or one that cannot be written as UTF-8 JSON (a lone surrogate from
a plugin source), is refused with `EventRejected` naming it, whatever the source.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from postbackd.events import (
    SYSTEM_EVENT_ID_PREFIX,
    SYSTEM_TYPE_PREFIX,
    Event,
    EventRejected,
)
from postbackd.generation import Generation
from postbackd.logs import get_logger
from postbackd.metrics import Metrics
from postbackd.plugin import SpoolUnavailable, SubmitResult
from postbackd.sla import timer_changes
from postbackd.spool import NewDelivery, Spool, TimerStart

log = get_logger("postbackd.intake")

RENDER_THREADS = 2
MAX_EVENT_BYTES = 1024 * 1024
OWN_SOURCE = "postbackd"  # the source label of the daemon's own events (its alerts)

RejectReason = Literal["invalid", "unauthorized", "too_large", "unavailable"]
"""Why a source refused input; the ``reason`` label of postbackd_events_rejected_total."""


class Intake:
    def __init__(
        self,
        spool: Spool,
        current: Callable[[], Generation],
        metrics: Metrics,
        on_committed: Callable[[Event], None],
        on_timer_started: Callable[[], None] = lambda: None,
    ) -> None:
        self.spool = spool
        self.current = current
        self.metrics = metrics
        self.on_committed = on_committed
        self.on_timer_started = on_timer_started
        self.closed = False
        self._render_pool = ThreadPoolExecutor(RENDER_THREADS, "postbackd-render")

    def close(self) -> None:
        """Refuse new events; renders under way finish on their threads."""
        self.closed = True
        self._render_pool.shutdown(wait=False)

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
        """Route and commit a batch in one spool write: all are stored, or none (raises).

        The ``postbackd.*`` types and ``postbackd:`` ids are the daemon's own (its alerts): a
        source that sends one is refused, so nobody can forge an alert or pre-empt a real one.
        """
        for index, event in enumerate(events):
            _check_not_reserved(event, index if len(events) > 1 else None)
        return await self._submit_many(events, source=source)

    async def submit_own(self, event: Event) -> SubmitResult:
        """Store one of the daemon's own events (an alert: `postbackd.alerts`)."""
        (result,) = await self._submit_many([event], source=OWN_SOURCE)
        return result

    async def _submit_many(self, events: Sequence[Event], *, source: str) -> list[SubmitResult]:
        if self.closed:
            self.rejected(source, "unavailable", len(events))
            raise SpoolUnavailable("postbackd is shutting down; send the event again later")
        generation = self.current()
        for index, event in enumerate(events):
            _check_size(event, index if len(events) > 1 else None)
        config = generation.config
        timers = timer_changes(config.sla, config.customers, events)
        try:
            routed = await self._route(generation, events)
            outcomes = await self.spool.submit_many(routed, source=source, timers=timers)
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
        if any(isinstance(change, TimerStart) for change in timers):
            self.on_timer_started()
        return [
            self._stored(generation, event, deliveries, outcome.duplicate, source)
            for (event, deliveries), outcome in zip(routed, outcomes, strict=True)
        ]

    async def _route(
        self, generation: Generation, events: Sequence[Event]
    ) -> list[tuple[Event, list[NewDelivery]]]:
        """Route each event on the render threads, with its order's previous event where a
        template reads ``changes`` (fetched first, on the loop: the spool is async).

        The previous event of an order is the batch's own earlier event of that order, else
        the spool's last stored one; the spool is asked only for events that need it.
        """
        router = generation.router
        previous: list[dict[str, Any] | None] = []
        earlier: dict[tuple[str, str], Event] = {}
        for event in events:
            order_id = event.order_id
            found = None
            if order_id is not None:
                before = earlier.get((event.customer, order_id))
                earlier[(event.customer, order_id)] = event
                if router.needs_previous(event):
                    found = (
                        before.to_dict()
                        if before is not None
                        else await self.spool.previous_event(event.customer, order_id, event.id)
                    )
            previous.append(found)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._render_pool,
            lambda: [(e, router.route(e, p)) for e, p in zip(events, previous, strict=True)],
        )

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


def _check_not_reserved(event: Event, index: int | None) -> None:
    """Refuse an event that claims to be one of the daemon's own (see `Intake.submit_many`)."""
    where = f"[{index}]" if index is not None else None
    if event.type.casefold().startswith(SYSTEM_TYPE_PREFIX):
        raise EventRejected(
            f"event {event.id!r}: the types {SYSTEM_TYPE_PREFIX}* are reserved for postbackd's "
            "own alerts; no source may send them",
            f"{where}.type" if where else "type",
        )
    if event.id.casefold().startswith(SYSTEM_EVENT_ID_PREFIX):
        raise EventRejected(
            f"ids starting with {SYSTEM_EVENT_ID_PREFIX!r} are reserved for postbackd's own "
            "alerts: give the event another id",
            f"{where}.id" if where else "id",
        )


def _check_size(event: Event, index: int | None) -> None:
    """Refuse an event too large to route and store, or that JSON in UTF-8 cannot carry."""
    where = f"[{index}]" if index is not None else None
    try:
        size = len(event.to_json())
    except (TypeError, ValueError) as exc:
        raise EventRejected(
            f"event {event.id!r} cannot be written as UTF-8 JSON ({exc}): remove lone surrogates "
            "and values JSON has no form for",
            where,
        ) from None
    if size > MAX_EVENT_BYTES:
        raise EventRejected(
            f"event {event.id!r} is {size} bytes, more than the limit of {MAX_EVENT_BYTES}: "
            "send the order without bulky fields (images, documents)",
            f"{where}.data" if where else "data",
        )
