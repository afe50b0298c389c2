"""The loop that fires due ``[[sla]]`` timers: each becomes a delay alert routed like any event.

It sleeps until the earliest pending timer is due (`Spool.next_timer_due`), never polling
faster than that; intake wakes it when it starts a timer (which may be due sooner than what it
waits for), and it looks again at least every MAX_SLEEP for timers another node of a fleet
started. A due timer is claimed (one node of a fleet fires it; see the backends), its alert is
submitted through intake (source ``sla``), and only then is the timer marked fired. Should
the daemon die in between, the claim runs out (SQLite: the next start clears it) and the timer
fires again, with the same alert id: intake answers "duplicate", and nothing is sent twice.

A timer whose rule is no longer in the configuration is cancelled, not fired: removing a rule
is how an operator stops its alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from postbackd.events import Event, EventRejected
from postbackd.generation import Generation
from postbackd.logs import get_logger
from postbackd.plugin import SpoolUnavailable, SubmitResult
from postbackd.sla.rules import alert_event
from postbackd.spool import SlaTimer, Spool

log = get_logger("postbackd.sla")

MAX_SLEEP = 30.0  # look for timers other nodes started at least this often
MIN_SLEEP = 0.05  # a claim held elsewhere that ends now is not a reason to spin
RETRY_AFTER = 5.0  # after a spool error
CLAIM_BATCH = 100
SLA_SOURCE = "sla"  # the source of delay alerts, in the request log and the metrics


class SlaFiring:
    def __init__(
        self,
        spool: Spool,
        current: Callable[[], Generation],
        submit: Callable[[Event], Awaitable[SubmitResult]],
    ) -> None:
        self.spool = spool
        self.current = current
        self.submit = submit
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A timer was started: it may be due before the one the loop sleeps for."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()  # before looking: a timer started meanwhile wakes the next sleep
            try:
                while await self.fire_due() == CLAIM_BATCH:
                    pass
                due = await self.spool.next_timer_due()
            except Exception as exc:  # the loop must outlive any one failure
                log.error(
                    "delay alerts: firing failed; trying again",
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=RETRY_AFTER,
                )
                due = time.time() + RETRY_AFTER
            wait = MAX_SLEEP if due is None else min(MAX_SLEEP, due - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(MIN_SLEEP, wait))

    async def fire_due(self) -> int:
        """Fire the timers due now (one claim's worth); returns how many were claimed."""
        lease = self.current().config.daemon.lease
        timers = await self.spool.claim_due_timers(time.time(), lease, CLAIM_BATCH)
        for timer in timers:
            await self.fire(timer)
        return len(timers)

    async def fire(self, timer: SlaTimer) -> None:
        """One claimed timer: its alert stored (or found stored), then the timer marked."""
        rule = self.current().config.sla.get(timer.rule)
        where = {"rule": timer.rule, "customer": timer.customer, "order_id": timer.order_id}
        if rule is None:
            await self.spool.finish_timer(
                timer.id, "cancelled", f"rule {timer.rule!r} is no longer in the configuration"
            )
            log.warning(
                "delay timer dropped: its [[sla]] rule was removed", timer_id=timer.id, **where
            )
            return
        last = await self.spool.previous_event(timer.customer, timer.order_id, timer.id)
        event = alert_event(rule, timer, last)
        try:
            result = await self.submit(event)
        except EventRejected as exc:
            await self.spool.finish_timer(timer.id, "cancelled", f"alert refused: {exc}")
            log.error(
                "delay alert refused; the timer is cancelled",
                event_id=event.id,
                error=str(exc),
                **where,
            )
            return
        except SpoolUnavailable as exc:
            log.error(
                "delay alert not stored; it fires again once its claim runs out",
                event_id=event.id,
                error=str(exc),
                **where,
            )
            return
        note = f"fired as {event.type} event {event.id}"
        await self.spool.finish_timer(timer.id, "fired", note)
        log.info(
            "delay alert fired",
            event_id=event.id,
            type=event.type,
            deliveries=result.deliveries,
            duplicate=result.duplicate,
            late_s=round(max(0.0, time.time() - timer.due_at), 3),
            **where,
        )
