"""Picks due deliveries from the spool and hands them to delivery plugins.

Concurrency is bounded twice: `concurrency` attempts in flight in all, `per_destination` per
scheme+host+port. A delivery waiting for its destination's slot holds no global slot, and the
reading of due deliveries never waits on a destination — so a slow receiver delays only its
own postbacks. Recording an outcome is shielded from cancellation: an attempt cut short by
shutdown is "will run again", never half-written. A spool that cannot be written (a full disk)
pauses the reading of due deliveries with backoff; it never ends the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from postbackd.attempt import AttemptRunner
from postbackd.breaker import BreakerBoard
from postbackd.generation import Generation
from postbackd.logs import get_logger
from postbackd.plugin import SpoolUnavailable
from postbackd.spool import Spool, StorageBackoff, StoredDelivery

log = get_logger("postbackd.dispatcher")

CLAIM_BATCH = 512
IDLE_POLL = 1.0  # the CLI may change the spool behind our back: look at least this often
BUFFER_FACTOR = 16  # claimed-but-waiting deliveries kept per slot (global and per destination)
LOW_WATER = 8  # claim again once no more than this many per slot are left: claims come in batches
# A claim waits for the spool's writer (behind intake, under load 50-100 ms): what is left
# when it is asked for must outlast it, or the attempts run dry. At 4 and 2 (128 left with
# 64 slots, ~40 ms of work at 3,000/s) nothing was in flight for half of a `steady` run.


@dataclass
class _Destination:
    waiting: deque[StoredDelivery] = field(default_factory=deque)
    workers: int = 0

    def full(self, cap: int) -> bool:
        """Its share of the buffer is taken: reading more for it would only put them back.

        Attempts in flight count: counting the queue alone, a destination whose workers had
        just taken their first deliveries looked open again, and each read claimed a batch
        for it only to put most of it back in the spool.
        """
        return len(self.waiting) + self.workers >= cap


class Dispatcher:
    def __init__(
        self,
        spool: Spool,
        current: Callable[[], Generation],
        breakers: BreakerBoard,
        runner: AttemptRunner,
    ) -> None:
        self.spool = spool
        self.current = current
        self.breakers = breakers
        self.runner = runner
        self._wake = asyncio.Event()
        self._destinations: dict[str, _Destination] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._buffered = 0  # claimed (inflight in the spool) but not yet finished
        self._stopping = False
        self._global: asyncio.Semaphore | None = None
        self._global_size = 0
        self._deferred: list[tuple[str, float]] = []
        self._refill_at: int | None = None  # buffered count at which to wake the reading loop
        # Destinations left out of the last read because their queue was full, and the queue
        # length at which draining wakes the reading loop (nothing else would while it sleeps).
        self._full: set[str] = set()
        self._drained_at = 0
        self._spool_trouble = StorageBackoff("claiming due deliveries")
        self._hungry = False

    # ------------------------------------------------------------------ control

    def wake(self) -> None:
        """New work may be due (an event was committed, an operator retried something)."""
        self._wake.set()

    async def run(self) -> None:
        """Claim due deliveries until `stop()`; returns when intake of new work has ended.

        The buffer is refilled in batches: only once it has drained to LOW_WATER per slot
        (attempts finishing wake the loop then), so each claim — a write to the spool — brings
        many deliveries rather than the one or two that have just finished.
        """
        while not self._stopping:
            try:
                more_due = await self._turn()
            except SpoolUnavailable as exc:  # a full disk: wait it out, never end
                await self._spool_trouble.wait(exc)
                continue
            self._spool_trouble.succeeded()
            if more_due:
                await asyncio.sleep(0)  # more is due: go on reading, let attempts start
                continue
            await self._sleep(self._hungry)

    async def _turn(self) -> bool:
        """Read one batch of due deliveries into the buffer; True when more are due at once."""
        # Cleared before reading, not after: a wake-up that comes while the spool is read
        # (an event committed meanwhile) must end the sleep that follows, not be lost.
        self._wake.clear()
        daemon = self.current().config.daemon
        self._resize(daemon.concurrency)
        cap = daemon.per_destination * BUFFER_FACTOR
        stalled = self._stalled(cap)
        active = self._buffered - stalled
        room = max(0, daemon.concurrency * BUFFER_FACTOR - active)
        hungry = room > 0 and active <= self._low_water
        # Not hungry: the attempt that brings the buffer down to the low-water mark wakes us.
        self._refill_at = None if hungry else self._low_water + stalled
        claimed: list[StoredDelivery] = []
        if hungry:
            claimed = await self.spool.claim_due(
                time.time(),
                min(room, CLAIM_BATCH),
                exclude_destinations=self._unavailable(daemon.per_destination),
            )
            for delivery in claimed:
                self._accept(delivery)
        self._hungry = hungry
        await self._flush_deferred()
        return bool(claimed) and len(claimed) == min(room, CLAIM_BATCH)

    def _stalled(self, cap: int) -> int:
        """Claimed deliveries at destinations whose queue is full (a slow or hung receiver).

        They do not count against the reading budget — else one slow receiver would use it up
        and stop every other destination; their number is bounded by `cap` per destination.
        """
        return sum(len(d.waiting) + d.workers for d in self._destinations.values() if d.full(cap))

    def _unavailable(self, per_destination: int) -> list[str]:
        """Destinations not to read for now: queue full, or breaker open and cooling down."""
        now = time.time()
        cap = per_destination * BUFFER_FACTOR
        full = [name for name, d in self._destinations.items() if d.full(cap)]
        self._full, self._drained_at = set(full), cap // 2
        cooling = [name for name, until in self.breakers.open_destinations().items() if until > now]
        return full + cooling

    async def stop(self, grace: float) -> None:
        """Stop claiming; let attempts in flight finish within `grace`, then cut them short."""
        self._stopping = True
        self.wake()
        queued = [d.id for dest in self._destinations.values() for d in dest.waiting]
        for dest in self._destinations.values():
            dest.waiting.clear()
        if queued:
            try:
                await self.spool.release_inflight(queued, time.time())
            except SpoolUnavailable as exc:  # still inflight: put back at the next start
                log.warning("claimed deliveries not released", count=len(queued), error=str(exc))
            self._buffered -= len(queued)
        if self._tasks:
            log.info("waiting for attempts in flight", count=len(self._tasks), grace_s=grace)
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            if pending:
                log.warning(
                    "cutting attempts short; they will run again after restart", count=len(pending)
                )
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        await self.runner.settle()
        try:
            await self._flush_deferred()
        except SpoolUnavailable as exc:  # still inflight: put back at the next start
            log.warning("deferred deliveries not released", error=str(exc))

    # ------------------------------------------------------------------ internals

    @property
    def _low_water(self) -> int:
        return self._global_size * LOW_WATER

    async def _sleep(self, hungry: bool) -> None:
        """Until woken, the next delivery is due, or IDLE_POLL; a full buffer waits for a wake."""
        timeout = IDLE_POLL
        if hungry:
            per_destination = self.current().config.daemon.per_destination
            next_due = await self.spool.next_due_at(self._unavailable(per_destination))
            if next_due is not None:
                timeout = min(IDLE_POLL, max(0.0, next_due - time.time()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    def _resize(self, concurrency: int) -> None:
        if self._global is None or concurrency != self._global_size:
            # A reload may change the bound; attempts holding the old semaphore finish on it.
            self._global = asyncio.Semaphore(concurrency)
            self._global_size = concurrency

    def _accept(self, delivery: StoredDelivery) -> None:
        self._buffered += 1
        generation = self.current()
        destination = self.runner.destination_for(generation, delivery)
        dest = self._destinations.setdefault(destination, _Destination())
        per_destination = generation.config.daemon.per_destination
        # Kept even beyond the destination's share: putting it back would cost a write, and
        # the queue cannot grow past its share by more than one read, since a full destination
        # is left out of reading until it has drained halfway.
        dest.waiting.append(delivery)
        while dest.workers < per_destination and dest.waiting:
            dest.workers += 1
            task = asyncio.create_task(self._work(destination, dest))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _defer(self, delivery_id: str, until: float) -> None:
        """Put a claimed delivery back, uncounted, until its destination may be tried."""
        self._deferred.append((delivery_id, until))
        self._buffered -= 1

    async def _flush_deferred(self) -> None:
        if not self._deferred:
            return
        batch, self._deferred = self._deferred, []
        by_time: dict[float, list[str]] = {}
        for delivery_id, until in batch:
            by_time.setdefault(round(until, 1), []).append(delivery_id)
        while by_time:
            until, ids = next(iter(by_time.items()))
            try:
                await self.spool.release_inflight(ids, until)
            except SpoolUnavailable:  # kept to be put back on a later turn, not left inflight
                self._deferred += [(i, u) for u, group in by_time.items() for i in group]
                raise
            del by_time[until]

    async def _work(self, destination: str, dest: _Destination) -> None:
        try:
            while dest.waiting and not self._stopping:
                delivery = dest.waiting.popleft()
                now = time.time()
                admission = self.breakers.admit(destination, now)
                if not admission.allowed:
                    self._defer(delivery.id, admission.wait_until)
                    continue
                assert self._global is not None
                async with self._global:
                    try:
                        await self.runner.attempt(self.current(), delivery, destination)
                    finally:
                        self._buffered -= 1
                        if self._refill_at is not None and self._buffered <= self._refill_at:
                            self._refill_at = None
                            self.wake()
                        elif destination in self._full and len(dest.waiting) <= self._drained_at:
                            self._full.discard(destination)  # half drained: read it again
                            self.wake()
        finally:
            dest.workers -= 1
            if not dest.waiting and not dest.workers:
                self._destinations.pop(destination, None)
            if self._deferred:
                self.wake()
