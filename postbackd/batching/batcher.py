"""Shipment files: closes the batch windows of triggers with ``batch`` and sends each file as
one attempt for all its deliveries.

A batching trigger's deliveries wait in the spool, ``pending``, stamped with their window
(`postbackd.batching`). When a window has ended, its deliveries' rows (their bodies, rendered
at routing time) are framed by the template's header and footer into one file, whose name and
bytes are stored with the deliveries bound to it in one transaction (`Spool.seal_batch`).
Then the file is sent through the trigger's delivery plugin like a postback — the destination
read from the trigger's current options, the retry schedule the trigger's — and every
outcome is recorded for the file and each of its deliveries at once (each delivery's request
log names the file). A crash before the outcome is committed sends the same file again: the
same name and bytes, so a receiver can drop the duplicate. An empty window sends nothing: a
window exists only through its deliveries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from postbackd.attempt import (
    TIMEOUT_MARGIN,
    AttemptWatch,
    attempt_timeout,
    make_attempt,
    observe,
)
from postbackd.batching.file_names import EXTENSIONS, file_name
from postbackd.batching.windows import window_end_of
from postbackd.config import Trigger
from postbackd.events import parse_event
from postbackd.generation import Generation
from postbackd.logs import get_logger
from postbackd.metrics import Metrics
from postbackd.plugin import Delivery, Outcome, OutcomeKind, SpoolUnavailable
from postbackd.retry import decide
from postbackd.router import destination_of
from postbackd.spool import (
    AttemptResult,
    BatchAttempt,
    DeliveryState,
    NewBatch,
    OpenWindow,
    Spool,
    StorageBackoff,
    StoredBatch,
)
from postbackd.templates import FileFrame, RenderError, compose_file

log = get_logger("postbackd.batcher")

IDLE_POLL = 1.0  # a new window may have opened: look at least this often
ERROR_PAUSE = 5.0  # after an unexpected error, before looking again
FILES_PER_CLAIM = 4
LEASE_MARGIN = 30.0  # a file's claim outlasts its attempt by this much
INACTIVE_RECHECK = 60.0  # a file of an inactive trigger is looked at again after this
SKEW_RECHECK = 10.0  # a file left to a node that knows its trigger: due again after this
SHIPMENT_FILE = "shipment.file"  # the `event_type` a plugin sees for a file


class Batcher:
    """Runs beside the dispatcher: `run()` until its task is cancelled at shutdown (a file
    being sent then is sent again after the restart: the same name and bytes)."""

    watch: AttemptWatch | None = None  # the operational alerts: a dead file is told of there

    def __init__(
        self,
        spool: Spool,
        current: Callable[[], Generation],
        deliveries: Mapping[str, Any],
        hook: Any,
        metrics: Metrics,
    ) -> None:
        """`hook`: the plugin manager's hook relay, for the observers of each file attempt;
        `metrics`: a file attempt counts as one attempt of its plugin."""
        self.spool = spool
        self.current = current
        self.deliveries = deliveries
        self.hook = hook
        self.metrics = metrics
        self._trouble = StorageBackoff("sending shipment files")

    async def run(self) -> None:
        """Close due windows and send due files, then sleep until the next is due."""
        while True:
            try:
                await self.run_once(time.time())
                self._trouble.succeeded()
            except SpoolUnavailable as exc:
                await self._trouble.wait(exc)
                continue
            except Exception as exc:  # a bug here must not stop the daemon's other postbacks
                log.error(
                    "shipment files: unexpected error; looking again shortly",
                    error=f"{type(exc).__name__}: {exc}",
                )
                await asyncio.sleep(ERROR_PAUSE)
                continue
            due = await self._next_due()
            delay = IDLE_POLL if due is None else min(IDLE_POLL, max(0.0, due - time.time()))
            await asyncio.sleep(delay)

    async def run_once(self, now: float) -> None:
        """One look: every window ended by `now` closed into a file, every due file sent."""
        for window in await self.spool.closed_windows(now):
            await self._close(self.current(), window)
        while True:
            files = await self.spool.claim_batches(
                time.time(), FILES_PER_CLAIM, self._lease(self.current())
            )
            if not files:
                return
            await asyncio.gather(*(self._send(self.current(), batch) for batch in files))

    async def _next_due(self) -> float | None:
        try:
            return await self.spool.next_batch_due()
        except SpoolUnavailable:
            return None

    def _lease(self, generation: Generation) -> float:
        timeouts = [
            attempt_timeout(t.options) for t in generation.config.triggers.values() if t.batch
        ]
        return max(timeouts, default=TIMEOUT_MARGIN) + LEASE_MARGIN

    async def _delivered_elsewhere(self, trigger: str) -> bool:
        """Whether another live node of the fleet delivers `trigger`, which this node does not
        know: configuration skew never cancels work (DESIGN §10), so its windows and files are
        left to that node. When the spool cannot tell now, nothing is cancelled either."""
        try:
            beats = await self.spool.live_nodes()
        except SpoolUnavailable:
            return True
        return any(trigger in beat.active_triggers for beat in beats)

    # ------------------------------------------------------------------ closing a window

    async def _close(self, generation: Generation, window: OpenWindow) -> None:
        trigger = generation.config.triggers.get(window.trigger)
        if trigger is None and await self._delivered_elsewhere(window.trigger):
            return  # another node of the fleet has the trigger: it closes the window
        if trigger is None:
            await self._end_rows(
                window,
                DeliveryState.CANCELLED,
                f"trigger {window.trigger!r} was removed from the configuration before its "
                "batch window closed",
            )
            return
        if not trigger.active:
            return  # its deliveries are held by the trigger sync; reactivated, they go out
        window = await self._rendered(generation, trigger, window)
        if not window.rows:
            return
        end = window_end_of(window.key)
        start = trigger.batch.start_of(end) if trigger.batch else end
        part = window.files + 1
        customer = generation.config.customers.get(trigger.customer)
        try:
            name = file_name(
                trigger.batch_file,
                trigger=trigger.name,
                customer=trigger.customer,
                start=start,
                end=end,
                part=part,
                ext=EXTENSIONS.get(window.format, "txt"),
            )
            frame = FileFrame(
                trigger=trigger.name,
                customer=trigger.customer,
                customer_name=customer.name if customer else trigger.customer,
                file_name=name,
                window_start=start,
                window_end=end,
                rows=len(window.rows),
            )
            body = await asyncio.to_thread(
                compose_file,
                generation.router.engine,
                trigger.template,
                frame,
                [row.body or b"" for row in window.rows],
            )
        except (RenderError, ValueError) as exc:
            log.error(
                "shipment file could not be written; its deliveries failed",
                trigger=trigger.name,
                window=window.key,
                deliveries=len(window.rows),
                error=str(exc),
            )
            await self._end_rows(window, DeliveryState.FAILED, f"shipment file: {exc}")
            return
        batch = NewBatch(
            id=f"{window.key}#{part}",
            window=window.key,
            part=part,
            trigger=trigger.name,
            plugin=trigger.delivery,
            customer=trigger.customer,
            file_name=name,
            format=window.format,
            content_type=window.content_type,
            body=body,
            delivery_ids=tuple(row.delivery_id for row in window.rows),
            next_attempt_at=time.time(),
        )
        if await self.spool.seal_batch(batch):
            log.info(
                "shipment file closed",
                trigger=trigger.name,
                customer=trigger.customer,
                file=name,
                rows=len(window.rows),
                bytes=len(body),
            )

    async def _rendered(
        self, generation: Generation, trigger: Trigger, window: OpenWindow
    ) -> OpenWindow:
        """The window with every row's body: a row whose body was dropped (``queue resend
        --rerender``) is rendered again with the trigger's current template; one that fails
        to render ends `failed` with the reason and stays out of the file."""
        rows = []
        for row in window.rows:
            if row.body is not None:
                rows.append(row)
                continue
            detail = await self.spool.get_delivery(row.delivery_id)
            if detail is None:
                continue
            event = parse_event(detail.event)
            outcome = await asyncio.to_thread(generation.router.render, trigger, event)
            if outcome.rendered is None:
                await self.spool.set_rendered(row.delivery_id, None, None, str(outcome.error))
                await self._end_rows(
                    replace(window, rows=(row,)), DeliveryState.FAILED, str(outcome.error)
                )
                continue
            body = outcome.rendered.body
            await self.spool.set_rendered(row.delivery_id, body, outcome.rendered.subject, None)
            rows.append(replace(row, body=body))
        return replace(window, rows=tuple(rows))

    async def _end_rows(self, window: OpenWindow, state: DeliveryState, reason: str) -> None:
        """End a window's deliveries without a file (trigger gone, file not writable)."""
        now = time.time()
        for row in window.rows:
            await self.spool.record_attempt(
                AttemptResult.decided(row.delivery_id, 0, state, reason, now)
            )

    # ------------------------------------------------------------------ sending a file

    async def _send(self, generation: Generation, batch: StoredBatch) -> None:
        """One attempt at the file, through the trigger's delivery and options as they are
        configured now (like a postback's destination)."""
        trigger = generation.config.triggers.get(batch.trigger)
        if trigger is None and await self._delivered_elsewhere(batch.trigger):
            reason = f"trigger {batch.trigger!r} is not configured on this node: left to others"
            await self._record(
                batch, DeliveryState.PENDING, time.time() + SKEW_RECHECK, _not_sent(reason), 0.0
            )
            return
        if trigger is None:
            reason = f"trigger {batch.trigger!r} was removed from the configuration"
            await self._record(batch, DeliveryState.CANCELLED, None, _not_sent(reason), 0.0)
            return
        if not trigger.active:
            await self._record(
                batch,
                DeliveryState.PENDING,
                time.time() + INACTIVE_RECHECK,
                _not_sent(f"trigger {trigger.name!r} is inactive: the file waits"),
                0.0,
            )
            return
        plugin = self.deliveries[trigger.delivery]  # the configuration names only known ones
        delivery = Delivery(
            id=batch.id,
            event_id="",
            event_type=SHIPMENT_FILE,
            customer=batch.customer,
            trigger=batch.trigger,
            attempt=batch.attempts + 1,
            format=batch.format,
            content_type=batch.content_type,
            subject=None,
            body=batch.body,
            file_name=batch.file_name,
        )
        attempted = await make_attempt(generation, trigger, plugin, delivery, trigger.options)
        outcome, duration = attempted.outcome, attempted.duration
        state, next_at, error = _decide(trigger, batch.attempts + 1, outcome)
        await self._record(batch, state, next_at, outcome, duration, error)
        self.metrics.deliveries.labels(trigger.delivery, batch.customer, str(outcome.kind)).inc()
        self.metrics.delivery_duration.labels(trigger.delivery).observe(duration)
        observe(self.hook, delivery, outcome, state)
        if state is DeliveryState.DEAD and self.watch is not None:
            self.watch.delivery_dead(delivery, destination_of(plugin, trigger), error)
        log.info(
            "shipment file attempt",
            trigger=batch.trigger,
            customer=batch.customer,
            file=batch.file_name,
            rows=batch.rows,
            attempt=delivery.attempt,
            outcome=str(outcome.kind),
            state=str(state),
            error=error,
            next_attempt_in_s=round(next_at - time.time(), 1) if next_at else None,
        )

    async def _record(
        self,
        batch: StoredBatch,
        state: DeliveryState,
        next_at: float | None,
        outcome: Outcome,
        duration: float,
        error: str | None = None,
    ) -> None:
        request = {
            **(outcome.request or {}),
            "file": batch.file_name,
            "batch": batch.id,
            "rows": batch.rows,
        }
        result = BatchAttempt(
            batch_id=batch.id,
            started_at=time.time() - duration,
            duration=duration,
            outcome=str(outcome.kind),
            new_state=state,
            next_attempt_at=next_at,
            status=outcome.status,
            error=error if error is not None else outcome.error,
            request=request,
            response=outcome.response,
            counted=outcome.detail != _NOT_SENT,
        )
        while True:
            try:
                await asyncio.shield(self.spool.record_batch_attempt(result))
                return
            except SpoolUnavailable as exc:
                if self.spool.closed:
                    return  # the file is sent again after a restart: same name, same bytes
                await self._trouble.wait(exc)


_NOT_SENT = "not sent"


def _not_sent(reason: str) -> Outcome:
    """No attempt was made (the trigger is gone or inactive): recorded, not counted."""
    return Outcome(OutcomeKind.RETRY, error=reason, detail=_NOT_SENT)


def _decide(
    trigger: Trigger, attempt: int, outcome: Outcome
) -> tuple[DeliveryState, float | None, str | None]:
    """The file's next state after `outcome`: the trigger's retry schedule, like a postback."""
    if outcome.kind is OutcomeKind.OK:
        return DeliveryState.DONE, None, None
    if outcome.kind is OutcomeKind.FAIL:
        return DeliveryState.DEAD, None, outcome.error
    decision = decide(trigger.delays, attempt, outcome.retry_after)
    if decision.retry:
        return DeliveryState.PENDING, time.time() + decision.delay, outcome.error
    return DeliveryState.DEAD, None, f"{outcome.error} — {decision.reason}"
