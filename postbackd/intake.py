"""The one way into the spool: route an event, commit it with its deliveries, then answer.

Every source — HTTP, file drop, AMQP, a plugin — gets its `submit` from here, so the
guarantees of DESIGN §1 hold for all of them: the caller hears "accepted" only after the
commit, the same event id twice yields one set of deliveries, and an event that matches
nothing is still recorded, logged and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from postbackd.config_model import Config
from postbackd.events import Event
from postbackd.logs import get_logger
from postbackd.metrics import Metrics
from postbackd.plugin import SpoolUnavailable, Submit, SubmitResult
from postbackd.router import Router
from postbackd.spool import Spool

log = get_logger("postbackd.intake")


@dataclass(frozen=True)
class Generation:
    """One accepted configuration and what was built from it; swapped whole on reload."""

    number: int
    config: Config
    router: Router
    loaded_at: str


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

    def submitter(self, source: str) -> Submit:
        """The `submit` callable handed to a source plugin."""

        async def submit(event: Event) -> SubmitResult:
            return await self.submit(event, source=source)

        return submit

    async def submit(self, event: Event, *, source: str) -> SubmitResult:
        if self.closed:
            raise SpoolUnavailable("postbackd is shutting down; send the event again later")
        generation = self.current()
        deliveries = generation.router.route(event)
        try:
            outcome = await self.spool.submit(event, deliveries, source=source)
        except SpoolUnavailable as exc:
            self.metrics.events_rejected.labels(source, "unavailable").inc()
            log.error(
                "event not stored",
                event_id=event.id,
                customer=event.customer,
                source=source,
                error=str(exc),
            )
            raise
        self.metrics.events_received.labels(source).inc()
        if outcome.duplicate:
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
