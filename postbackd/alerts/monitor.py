"""Operational alerts: what goes wrong in the daemon, raised as events of its own.

A destination whose breaker stays open past ``[alerts] destination_failing_after`` and its
recovery, deliveries that died (gathered per destination over ``delivery_dead_window``), a
reload rejected, a source not ready past ``source_down_after`` and its recovery: each becomes a
``postbackd.*`` event of the ``[alerts] customer``, submitted through intake like any event —
durable, routed by ordinary triggers to email, a webhook or any delivery plugin, and in the
request log. One event per episode (`postbackd.alerts.episodes`).

Two promises. An alert never blocks or fails what it reports on: the reports are synchronous,
never raise, and only queue; a background task submits, waiting out a spool that cannot be
written with the same backoff as every writer. And an alert never loops: a delivery of the
alerts customer that dies raises no alert (it would report on itself), and a failing
destination is one episode however many alerts queue behind its breaker.

Alerts that no active trigger routes are logged, not stored: a daemon with no alert trigger
keeps no events nobody reads. Episodes live in memory: after a restart a destination still
failing begins a new episode (and is told again once it has lasted the setting).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from postbackd.alerts.episodes import (
    MAX_LISTED,
    Alert,
    DeadWindows,
    HeldConditions,
    Transition,
    clip,
    iso_time,
)
from postbackd.breaker import BreakerBoard
from postbackd.events import Event, EventRejected, now_iso
from postbackd.generation import Generation
from postbackd.intake import Intake
from postbackd.logs import get_logger
from postbackd.plugin import Delivery, SpoolUnavailable
from postbackd.spool import StorageBackoff
from postbackd.units import format_duration, plural

log = get_logger("postbackd.alerts")

TICK = 1.0  # how often breakers, sources and dead windows are looked at
MAX_QUEUED = 1000  # alerts waiting to be stored; beyond it they are logged and dropped

SourceStates = Callable[[], tuple[Mapping[str, bool], Mapping[str, str]]]
"""Each source's readiness, and the errors of those that are not ready."""


class AlertMonitor:
    """Watches the daemon's parts and raises one alert per episode (see the module doc)."""

    def __init__(
        self,
        current: Callable[[], Generation],
        intake: Intake,
        breakers: BreakerBoard,
        source_states: SourceStates,
    ) -> None:
        self.current = current
        self.intake = intake
        self.breakers = breakers
        self.source_states = source_states
        self._destinations = HeldConditions()
        self._sources = HeldConditions()
        self._source_down_since: dict[str, float] = {}
        self._source_errors: dict[str, str] = {}
        self._opened_by: dict[str, str | None] = {}  # the error that opened each breaker
        self._dead = DeadWindows()
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(MAX_QUEUED)
        self._storing = StorageBackoff("storing alerts")

    def tasks(self) -> list[asyncio.Task[None]]:
        """The watch and the sender; the daemon cancels them at shutdown."""
        return [
            asyncio.create_task(self._watch(), name="alerts-watch"),
            asyncio.create_task(self._send(), name="alerts-send"),
        ]

    # ------------------------------------------------------------ reports (never raise)

    def breaker_opened(self, destination: str, error: str | None) -> None:
        """A destination's breaker opened: keep the error that did it, for the alert."""
        self._opened_by.setdefault(destination, clip(error) if error else None)

    def delivery_dead(self, delivery: Delivery, destination: str, error: str | None) -> None:
        """A delivery ended `dead`; gathered with the others of its destination."""
        try:
            if delivery.customer == self.current().config.alerts.customer:
                log.warning(
                    "alert delivery dead; no alert about it (an alert about an alert would loop)",
                    delivery_id=delivery.id,
                    event_id=delivery.event_id,
                    trigger=delivery.trigger,
                )
                return
            entry = {
                "deliveryId": delivery.id,
                "eventId": delivery.event_id,
                "eventType": delivery.event_type,
                "customer": delivery.customer,
                "trigger": delivery.trigger,
                "orderId": delivery.order_id,
                "attempts": delivery.attempt,
                "error": clip(error) if error else None,
            }
            self._dead.add(destination, entry, time.time())
        except Exception:  # the delivery's outcome is recorded whatever happens here
            log.exception("alert about a dead delivery lost", delivery_id=delivery.id)

    def reload_rejected(self, errors: list[str], reason: str) -> None:
        """A reload was rejected: one alert per running generation and set of errors, so the
        directory watch firing again on the same broken file tells nobody twice."""
        try:
            generation = self.current()
            # the generation's load time too: generation 2 of last month's run is another one
            subject = "\n".join([generation.loaded_at, *errors])
            digest = hashlib.sha256(subject.encode("utf-8", "replace")).hexdigest()
            listed = [clip(error) for error in errors[:MAX_LISTED]]
            self._raise(
                Alert(
                    type="postbackd.reload_rejected",
                    episode=f"g{generation.number}-{digest[:16]}",
                    status="firing",
                    summary=(
                        f"configuration reload rejected ({plural(len(errors), 'error')}): "
                        f"generation {generation.number} stays in force"
                    ),
                    since=time.time(),
                    details={
                        "generation": generation.number,
                        "reason": reason,
                        "errors": listed,
                        "more": len(errors) - len(listed),
                    },
                )
            )
        except Exception:
            log.exception("alert about a rejected reload lost")

    # ------------------------------------------------------------ the watch

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.look(time.time())
            except Exception:  # a bug here must not end the watch, nor the daemon
                log.exception("alert watch failed; looking again")

    def look(self, now: float) -> None:
        """One look at breakers, sources and dead windows; raises what is due."""
        alerts = self.current().config.alerts
        self._look_at_destinations(alerts.destination_failing_after, now)
        self._look_at_sources(alerts.source_down_after, now)
        for batch in self._dead.closed(alerts.delivery_dead_window, now):
            self._raise(
                Alert(
                    type="postbackd.delivery_dead",
                    episode=batch.episode,
                    status="firing",
                    summary=(
                        f"{plural(batch.count, 'delivery', 'deliveries')} dead at "
                        f"{batch.destination}"
                    ),
                    since=batch.opened,
                    details={
                        "destination": batch.destination,
                        "count": batch.count,
                        "deliveries": list(batch.listed),
                        "more": batch.count - len(batch.listed),
                    },
                )
            )

    def _look_at_destinations(self, after: float, now: float) -> None:
        failing = self.breakers.open_since()
        alerted = self._destinations.alerted()
        for closed in set(self._opened_by) - set(failing) - set(alerted):
            del self._opened_by[closed]  # a blip: its error is nobody's business
        for change in self._destinations.observe(failing, after, now):
            self._raise(self._destination_alert(change))
            if change.kind == "resolved":
                self._opened_by.pop(change.subject, None)

    def _look_at_sources(self, after: float, now: float) -> None:
        ready, errors = self.source_states()
        redactor = self.current().config.redactor  # a source's error may quote its settings
        for name, is_ready in ready.items():
            if is_ready:
                self._source_down_since.pop(name, None)
            else:
                self._source_down_since.setdefault(name, now)
                error = errors.get(name)
                self._source_errors[name] = clip(redactor.text(error)) if error else "not ready"
        for name in set(self._source_down_since) - set(ready):
            del self._source_down_since[name]  # removed from the configuration: episode over
        for change in self._sources.observe(self._source_down_since, after, now):
            self._raise(self._source_alert(change, removed=change.subject not in ready))

    def _destination_alert(self, change: Transition) -> Alert:
        dest = change.subject
        triggers = self.current().router.triggers_at(dest)
        details: dict[str, Any] = {
            "destination": dest,
            "failingSince": iso_time(change.since),
            "failingForSeconds": round(change.lasted),
            "triggers": sorted(t.name for t in triggers),
            "customers": sorted({t.customer for t in triggers}),
        }
        if change.kind == "fired":
            details["lastError"] = self._opened_by.get(dest)
            return Alert(
                "postbackd.destination_failing",
                change.episode,
                "firing",
                f"destination {dest} failing for {format_duration(change.lasted)}: its "
                "postbacks wait behind the circuit breaker",
                change.since,
                details,
            )
        return Alert(
            "postbackd.destination_recovered",
            change.episode,
            "resolved",
            f"destination {dest} recovered after {format_duration(change.lasted)}",
            change.since,
            details,
        )

    def _source_alert(self, change: Transition, *, removed: bool) -> Alert:
        name = change.subject
        details = {
            "source": name,
            "downSince": iso_time(change.since),
            "downForSeconds": round(change.lasted),
            "error": self._source_errors.get(name),
        }
        if change.kind == "fired":
            return Alert(
                "postbackd.source_down",
                change.episode,
                "firing",
                f"source {name} down for {format_duration(change.lasted)}: {details['error']}",
                change.since,
                details,
            )
        self._source_errors.pop(name, None)
        how = "removed from the configuration" if removed else "recovered"
        return Alert(
            "postbackd.source_recovered",
            change.episode,
            "resolved",
            f"source {name} {how} after {format_duration(change.lasted)}",
            change.since,
            {**details, "removed": removed},
        )

    # ------------------------------------------------------------ sending

    def _raise(self, alert: Alert) -> None:
        log.warning(
            "alert",
            type=alert.type,
            event_id=alert.event_id,
            summary=alert.summary,
        )
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            log.error("alert dropped: too many waiting to be stored", event_id=alert.event_id)
            self._count(alert, "dropped")

    def _count(self, alert: Alert, outcome: str) -> None:
        self.intake.metrics.alerts.labels(alert.type, outcome).inc()

    async def _send(self) -> None:
        while True:
            alert = await self._queue.get()
            try:
                await self._store(alert)
            except Exception:  # a bug: say so, and go on with the next alert
                log.exception("alert not stored", event_id=alert.event_id)

    async def _store(self, alert: Alert) -> None:
        """Submit one alert's event until it is stored (or nobody would receive it)."""
        generation = self.current()
        alerts = generation.config.alerts
        event = Event(
            id=alert.event_id,
            type=alert.type,
            customer=alerts.customer,
            time=now_iso(),
            data=alert.data(generation.config.daemon.node),
        )
        if not generation.router.matching_triggers(event):
            self._count(alert, "unrouted")
            log.info(
                "alert not stored: no active trigger routes it",
                event_id=event.id,
                customer=alerts.customer,
                hint=f'add a [[trigger]] of customer "{alerts.customer}" for {alert.type}',
            )
            return
        while True:
            try:
                result = await self.intake.submit_own(event)
            except SpoolUnavailable as exc:
                if self.intake.closed:
                    log.warning("alert not stored: shutting down", event_id=event.id)
                    self._count(alert, "dropped")
                    return
                await self._storing.wait(exc, event_id=event.id)
                continue
            except EventRejected as exc:  # a bug: our own event must be valid
                log.error("alert not stored", event_id=event.id, error=str(exc))
                self._count(alert, "dropped")
                return
            self._storing.succeeded()
            self._count(alert, "duplicate" if result.duplicate else "stored")
            return
