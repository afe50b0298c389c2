"""One delivery attempt, from the trigger's current config to the recorded outcome.

The destination (URL, recipients, secrets) is read from the trigger as configured *now*, so
fixing a wrong URL fixes the deliveries waiting to be retried; the payload is the one fixed at
routing time. Plugin errors are contained: an exception is a retryable failure naming the
plugin, a hung `deliver` is cut by the attempt timeout, and the daemon goes on.

An attempt's outcome is handed to the spool and the attempt ends: the commit that makes it
durable is awaited by nobody holding a concurrency slot (a slot held through the group commit's
fsync capped throughput at concurrency ÷ commit latency). Until that commit the delivery stays
``inflight`` in the spool, so it is neither claimed again nor lost; the request-log line, the
metrics and the observer hooks follow the commit.

A spool that cannot be written (a full disk) delays the recording of an outcome, never loses
it: the write is tried again with backoff (`StorageBackoff`) until it is committed or the
daemon stops (then the delivery, still ``inflight``, is attempted again after the restart).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from postbackd.breaker import BreakerBoard
from postbackd.config import Trigger
from postbackd.events import parse_event
from postbackd.generation import Generation
from postbackd.logs import get_logger
from postbackd.metrics import Metrics
from postbackd.plugin import Delivery, Outcome, OutcomeKind, SpoolUnavailable
from postbackd.redaction import masked_outcome
from postbackd.retry import decide
from postbackd.router import destination_of
from postbackd.spool import (
    TRIGGER_INACTIVE,
    AttemptResult,
    DeliveryState,
    Spool,
    StorageBackoff,
    StoredDelivery,
)
from postbackd.templates import RenderError
from postbackd.units import parse_duration

log = get_logger("postbackd.attempt")

DEFAULT_ATTEMPT_TIMEOUT = 60.0
TIMEOUT_MARGIN = 5.0  # beyond the plugin's own timeout, before we cut a hung attempt


class AttemptWatch(Protocol):
    """Who hears of breakers opening and deliveries dying (the operational alerts). Both
    methods are synchronous and must not raise: the attempt has ended, nothing waits on them."""

    def breaker_opened(self, destination: str, error: str | None) -> None: ...

    def delivery_dead(self, delivery: Delivery, destination: str, error: str | None) -> None: ...


@dataclass(frozen=True)
class Attempted:
    """What a delivery plugin made of one attempt (secrets masked), and when it ran: the same
    whether this process made it or a delivery worker did (`postbackd.workers`)."""

    outcome: Outcome
    started: float
    duration: float
    worker: int | None = None  # the delivery worker that made it; None: this process


class RemoteAttempts(Protocol):
    """Delivery workers that make attempts for this process (`postbackd.workers.remote`)."""

    async def attempt(
        self,
        identity: str,
        trigger: Trigger,
        delivery: Delivery,
        options: Mapping[str, Any] | None,
    ) -> Attempted | None:
        """The attempt made by a worker that runs the configuration `identity`, with `options`
        (None: the trigger's own); None when no worker can (then this process makes it)."""
        ...


class AttemptRunner:
    watch: AttemptWatch | None = None  # set by the daemon once the alerts exist
    remote: RemoteAttempts | None = None  # set by the daemon when it has delivery workers

    def __init__(
        self,
        spool: Spool,
        deliveries: Mapping[str, Any],
        breakers: BreakerBoard,
        metrics: Metrics,
        hook: Any,
    ) -> None:
        self.spool = spool
        self.deliveries = deliveries
        self.breakers = breakers
        self.metrics = metrics
        self.hook = hook
        self._counted: dict[tuple[str, str, str], Any] = {}  # labelled metrics, looked up once
        self._timed: dict[str, Any] = {}
        self._recording: set[asyncio.Future[bool]] = set()  # outcomes not yet committed
        self._outcome_trouble = StorageBackoff("recording attempt outcomes")
        self._put_back_trouble = StorageBackoff("putting deliveries back")

    def destination_for(self, generation: Generation, delivery: StoredDelivery) -> str:
        """The peer an attempt goes to, for concurrency bounds and the circuit breaker."""
        trigger = generation.config.triggers.get(delivery.trigger)
        plugin = self.deliveries.get(delivery.plugin)
        if trigger is None or plugin is None:
            return f"{delivery.plugin}:"
        return destination_of(plugin, trigger)

    async def settle(self) -> None:
        """Wait until every outcome handed to the spool is committed (at shutdown)."""
        if self._recording:
            await asyncio.gather(*list(self._recording), return_exceptions=True)

    async def attempt(self, generation: Generation, stored: StoredDelivery, dest: str) -> None:
        """Run one attempt and hand its outcome to the spool (see the module docstring);
        never raises except for cancellation."""
        try:
            await self._attempt(generation, stored, dest)
        except SpoolUnavailable as exc:  # a write before the attempt failed: put it back
            self.breakers.release_probe(dest, time.time())
            await self._put_back(stored, exc)
        except asyncio.CancelledError:
            await asyncio.shield(self.spool.release_inflight([stored.id], time.time()))
            self.breakers.release_probe(dest, time.time())
            raise

    async def _put_back(self, stored: StoredDelivery, error: SpoolUnavailable) -> None:
        """Make a claimed delivery pending again, however long the spool refuses writes."""
        while not self.spool.closed:
            await self._put_back_trouble.wait(error, delivery_id=stored.id)
            try:
                await self.spool.release_inflight([stored.id], time.time())
            except SpoolUnavailable as exc:
                error = exc
                continue
            self._put_back_trouble.succeeded()
            return

    async def _attempt(self, generation: Generation, stored: StoredDelivery, dest: str) -> None:
        trigger = generation.config.triggers.get(stored.trigger)
        # configuration skew in a fleet never cancels or holds work another node delivers
        unusable = trigger is None or not trigger.active
        if unusable and await self.spool.leave_to_others(stored.id, stored.trigger):
            log.info(
                "delivery left to the nodes that deliver its trigger",
                delivery_id=stored.id,
                trigger=stored.trigger,
                reason="not configured here" if trigger is None else "inactive here",
            )
            self.breakers.release_probe(dest, time.time())
            return
        if trigger is None:
            await self._finish_without_attempt(
                stored,
                DeliveryState.CANCELLED,
                f"trigger {stored.trigger!r} was removed from the configuration",
            )
            self.breakers.release_probe(dest, time.time())
            return
        if not trigger.active:
            await self.spool.hold_inflight(stored.id, TRIGGER_INACTIVE)
            self.breakers.release_probe(dest, time.time())
            return
        if stored.body is None:
            rendered = await self._rerender(generation, trigger, stored)
            if rendered is None:
                self.breakers.release_probe(dest, time.time())
                return
            stored = rendered
        plugin = self.deliveries[trigger.delivery]
        options = await self._rendered_options(generation, trigger, plugin, stored)
        if options is None:
            self.breakers.release_probe(dest, time.time())
            return
        delivery = Delivery(
            id=stored.id,
            event_id=stored.event_id,
            event_type=stored.event_type,
            customer=stored.customer,
            trigger=stored.trigger,
            attempt=stored.logged_attempts + 1,  # numbered by the log: across retries
            format=stored.format,
            content_type=stored.content_type,
            subject=stored.subject,
            body=stored.body or b"",
            order_id=stored.order_id,
        )
        attempted = None
        if self.remote is not None:  # a delivery worker of this daemon makes it, if one can
            custom = None if options is trigger.options else options
            attempted = await self.remote.attempt(generation.identity, trigger, delivery, custom)
        if attempted is None:
            attempted = await make_attempt(generation, trigger, plugin, delivery, options)
        self._record(trigger, delivery, stored.attempts + 1, attempted, dest)

    async def _rendered_options(
        self, generation: Generation, trigger: Trigger, plugin: Any, stored: StoredDelivery
    ) -> Mapping[str, Any] | None:
        """The trigger's options with the templated ones rendered from the delivery's event.

        A delivery plugin lists the options it lets be templates in ``template_options``
        (email: to, cc, bcc, reply_to). They are rendered at each attempt, like the rest of
        the options read then, and judged by the plugin's `validate_options`: a render error
        or a rendered value it refuses (empty, a line break, not an address) ends the delivery
        `failed` with the reason — it never reaches a header. None then.
        """
        keys = [
            key
            for key in getattr(plugin, "template_options", ())
            if key in trigger.options and _has_template(trigger.options[key])
        ]
        if not keys:
            return trigger.options
        detail = await self.spool.get_delivery(stored.id)
        if detail is None:
            return None
        event = parse_event(detail.event)
        customer = generation.config.customers.get(event.customer)
        engine = generation.router.engine
        rendered = dict(trigger.options)
        problems = []
        for key in keys:
            value = trigger.options[key]
            try:
                if isinstance(value, str):
                    rendered[key] = engine.render_option(trigger, key, value, event, customer)
                else:
                    rendered[key] = [
                        engine.render_option(trigger, key, str(item), event, customer)
                        if _has_template(item)
                        else item
                        for item in value
                    ]
            except RenderError as exc:
                problems.append(f"options.{key}: {exc}")
                continue
            values = rendered[key] if isinstance(rendered[key], list) else [rendered[key]]
            if any(not str(item).strip() for item in values):
                problems.append(f"options.{key}: {value!r} rendered an empty value for this event")
        if not problems:
            problems = list(plugin.validate_options(rendered))
        if problems:
            templates = ", ".join(f"{key} = {trigger.options[key]!r}" for key in keys)
            reason = (
                f"trigger {trigger.name!r}: options rendered from the event refused: "
                f"{'; '.join(problems)} (templates: {templates})"
            )
            await self._finish_without_attempt(stored, DeliveryState.FAILED, reason)
            return None
        return rendered

    def _record(
        self,
        trigger: Trigger,
        delivery: Delivery,
        in_schedule: int,
        attempted: Attempted,
        dest: str,
    ) -> None:
        now = time.time()
        outcome = attempted.outcome
        next_at: float | None = None
        error = outcome.error
        if outcome.kind is OutcomeKind.OK:
            state = DeliveryState.DONE
        elif outcome.kind is OutcomeKind.FAIL:
            state = DeliveryState.DEAD
        else:
            # The schedule restarts with `queue retry`; the attempt number does not.
            decision = decide(trigger.delays, in_schedule, outcome.retry_after)
            if decision.retry:
                state, next_at = DeliveryState.PENDING, now + decision.delay
            else:
                state = DeliveryState.DEAD
                error = f"{outcome.error} — {decision.reason}"
        if outcome.breaker and outcome.kind is not OutcomeKind.FAIL:
            if self.breakers.record(dest, outcome.succeeded, now):
                log.warning(
                    "circuit breaker opened",
                    destination=dest,
                    cooldown_s=self.breakers.open_destinations().get(dest, now) - now,
                )
                if self.watch is not None:
                    self.watch.breaker_opened(dest, error)
        else:
            self.breakers.release_probe(dest, now)
        result = AttemptResult(
            delivery_id=delivery.id,
            number=delivery.attempt,
            started_at=attempted.started,
            duration=attempted.duration,
            outcome=str(outcome.kind),
            new_state=state,
            next_attempt_at=next_at,
            status=outcome.status,
            error=error,
            request=outcome.request,
            response=outcome.response,
            destination=dest,
        )
        self._hand_to_spool(trigger.delivery, delivery, attempted, result, now)

    def _hand_to_spool(
        self,
        plugin: str,
        delivery: Delivery,
        attempted: Attempted,
        result: AttemptResult,
        now: float,
    ) -> None:
        if self.spool.closed:
            log.warning(
                "attempt outcome not recorded (shutting down); the delivery is attempted again "
                "after a restart",
                delivery_id=delivery.id,
                event_id=delivery.event_id,
            )
            return
        written = self.spool.record_attempt(result)
        self._recording.add(written)
        written.add_done_callback(
            functools.partial(self._recorded, plugin, delivery, attempted, result, now)
        )

    def _recorded(
        self,
        plugin: str,
        delivery: Delivery,
        attempted: Attempted,
        result: AttemptResult,
        now: float,
        written: asyncio.Future[bool],
    ) -> None:
        """The outcome is committed (or could not be): log, measure, tell the observers."""
        outcome = attempted.outcome
        self._recording.discard(written)
        problem = "shutting down" if written.cancelled() else written.exception()
        if isinstance(problem, SpoolUnavailable) and not self.spool.closed:
            delay = self._outcome_trouble.failed(problem, delivery_id=delivery.id)
            asyncio.get_running_loop().call_later(
                delay, self._hand_to_spool, plugin, delivery, attempted, result, now
            )
            return
        if problem is None:
            self._outcome_trouble.succeeded()
        if problem is not None:
            log.error(
                "attempt outcome not recorded; the delivery is attempted again after a restart",
                delivery_id=delivery.id,
                event_id=delivery.event_id,
                customer=delivery.customer,
                outcome=str(outcome.kind),
                error=str(problem),
            )
            return
        state, next_at = result.new_state, result.next_attempt_at
        self._measure(plugin, delivery.customer, str(outcome.kind), result.duration)
        log.info(
            "delivery attempt",
            delivery_id=delivery.id,
            event_id=delivery.event_id,
            customer=delivery.customer,
            trigger=delivery.trigger,
            attempt=delivery.attempt,
            outcome=str(outcome.kind),
            state=str(state),
            status=outcome.status,
            error=result.error,
            next_attempt_in_s=round(next_at - now, 1) if next_at else None,
            ms=round(result.duration * 1000, 1),
            # the worker that made it (absent: this process, whose lines may name it already)
            **({} if attempted.worker is None else {"worker": attempted.worker}),
        )
        if state is DeliveryState.DEAD and self.watch is not None:
            self.watch.delivery_dead(delivery, result.destination or "", result.error)
        self._observe(delivery, outcome, state)

    def _measure(self, plugin: str, customer: str, outcome: str, duration: float) -> None:
        key = (plugin, customer, outcome)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.metrics.deliveries.labels(*key)
        counter.inc()
        timer = self._timed.get(plugin)
        if timer is None:
            timer = self._timed[plugin] = self.metrics.delivery_duration.labels(plugin)
        timer.observe(duration)

    def _observe(self, delivery: Delivery, outcome: Outcome, state: DeliveryState) -> None:
        observe(self.hook, delivery, outcome, state)

    async def _rerender(
        self, generation: Generation, trigger: Trigger, stored: StoredDelivery
    ) -> StoredDelivery | None:
        """A `failed` delivery retried by an operator is rendered again with today's template."""
        detail = await self.spool.get_delivery(stored.id)
        if detail is None:
            return None
        event = parse_event(detail.event)
        previous = None
        if event.order_id is not None and generation.router.uses_changes(trigger):
            previous = await self.spool.previous_event(event.customer, event.order_id, event.id)
        outcome = await asyncio.to_thread(  # off the loop
            generation.router.render, trigger, event, previous
        )
        if outcome.rendered is None:
            await self.spool.set_rendered(stored.id, None, None, str(outcome.error))
            await self._finish_without_attempt(stored, DeliveryState.FAILED, str(outcome.error))
            return None
        rendered = outcome.rendered
        await self.spool.set_rendered(stored.id, rendered.body, rendered.subject, None)
        return _replace_payload(stored, rendered.body, rendered.subject)

    async def _finish_without_attempt(
        self, stored: StoredDelivery, state: DeliveryState, reason: str
    ) -> None:
        log.info(
            "delivery ended",
            delivery_id=stored.id,
            event_id=stored.event_id,
            customer=stored.customer,
            trigger=stored.trigger,
            state=str(state),
            reason=reason,
        )
        await asyncio.shield(
            self.spool.record_attempt(
                # no attempt: the last one's number
                AttemptResult.decided(stored.id, stored.logged_attempts, state, reason, time.time())
            )
        )


def _has_template(value: Any) -> bool:
    """A template option: a string (or a list holding one) with ``{{`` or ``{%``."""
    items = value if isinstance(value, list | tuple) else [value]
    return any(isinstance(item, str) and ("{{" in item or "{%" in item) for item in items)


def observe(hook: Any, delivery: Delivery, outcome: Outcome, state: DeliveryState) -> None:
    """Tell observer plugins of a recorded attempt (a postback's or a shipment file's); a
    plugin that raises is logged by name and ignored."""
    calls = [hook.postbackd_after_delivery]
    if state is DeliveryState.DEAD:
        calls.append(hook.postbackd_on_delivery_dead)
    for caller in calls:
        if not caller.get_hookimpls():
            continue  # nobody listens: skip pluggy's call machinery on every attempt
        try:
            caller(delivery=delivery, outcome=outcome)
        except Exception as exc:
            log.error(
                "observer plugin raised",
                hook=caller.name,
                delivery_id=delivery.id,
                error=f"{type(exc).__name__}: {exc}",
            )


async def make_attempt(
    generation: Generation,
    trigger: Trigger,
    plugin: Any,
    delivery: Delivery,
    options: Mapping[str, Any],
) -> Attempted:
    """One call of the plugin, timed, its outcome masked of the configuration's secrets."""
    started = time.time()
    outcome = await call_plugin(plugin, trigger, delivery, options)
    outcome = masked_outcome(outcome, trigger.redactor, generation.config.shared_redactor)
    return Attempted(outcome, started, time.time() - started)


async def call_plugin(
    plugin: Any, trigger: Trigger, delivery: Delivery, options: Mapping[str, Any]
) -> Outcome:
    """The plugin's `deliver`, contained: an exception or a hung call becomes a retryable
    `Outcome` naming the plugin (a postback or a shipment file alike)."""
    timeout = attempt_timeout(trigger.options)
    try:
        async with asyncio.timeout(timeout):
            outcome = await plugin.deliver(delivery, options)
    except TimeoutError:
        return Outcome.retry(
            f"delivery plugin {trigger.delivery!r} did not finish within {timeout:g}s"
        )
    except Exception as exc:
        log.error(
            "delivery plugin raised",
            plugin=trigger.delivery,
            delivery_id=delivery.id,
            event_id=delivery.event_id,
            customer=delivery.customer,
            trigger=delivery.trigger,
            error=f"{type(exc).__name__}: {exc}",
        )
        return Outcome.retry(f"plugin {trigger.delivery!r} raised {type(exc).__name__}: {exc}")
    if not isinstance(outcome, Outcome):
        return Outcome.retry(
            f"plugin {trigger.delivery!r} returned {type(outcome).__name__}, not an Outcome"
        )
    return outcome


def attempt_timeout(options: Mapping[str, Any]) -> float:
    value = options.get("timeout")
    if value is None:
        return DEFAULT_ATTEMPT_TIMEOUT
    try:
        return _timeout(value)
    except (ValueError, TypeError):
        return DEFAULT_ATTEMPT_TIMEOUT


@functools.lru_cache(maxsize=256)
def _timeout(value: str | float) -> float:
    return parse_duration(value) + TIMEOUT_MARGIN


def _replace_payload(stored: StoredDelivery, body: bytes, subject: str | None) -> StoredDelivery:
    return replace(stored, body=body, subject=subject)
