"""Background chores of a running daemon: retention, systemd keep-alives, status, gauges.

Retention deletes finished deliveries (and their request log) older than
``[daemon] retention`` in small batches, yielding between them, so pruning a large spool
never stalls delivery. The systemd watchdog is pinged at half its interval only while the
event loop turns and the daemon calls itself `healthy` (its dispatcher runs) — a wedged loop
or a dead dispatcher stops the pings, and systemd restarts the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from postbackd.breaker import BreakerBoard
from postbackd.generation import Generation
from postbackd.logs import get_logger
from postbackd.metrics import Metrics
from postbackd.sdnotify import Notifier
from postbackd.spool import HEARTBEAT_EVERY, Spool, SpoolStats

log = get_logger("postbackd.housekeeping")

PRUNE_EVERY = 60.0
PRUNE_BATCH = 500
STATUS_EVERY = 10.0


class Housekeeping:
    def __init__(
        self,
        spool: Spool,
        current: Callable[[], Generation],
        metrics: Metrics,
        breakers: BreakerBoard,
        notifier: Notifier,
        healthy: Callable[[], bool] = lambda: True,
        heartbeat: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.spool = spool
        self.current = current
        self.metrics = metrics
        self.breakers = breakers
        self.notifier = notifier
        self.healthy = healthy
        self.heartbeat = heartbeat
        self._done_before: float | None = None
        self._done_at = time.monotonic()

    def tasks(self) -> list[asyncio.Task[None]]:
        tasks = [
            asyncio.create_task(self._prune_forever(), name="retention"),
            asyncio.create_task(self._status_forever(), name="status"),
        ]
        if self.heartbeat is not None:
            tasks.append(asyncio.create_task(self._heartbeat_forever(), name="heartbeat"))
        interval = Notifier.watchdog_interval()
        if interval and self.notifier.enabled:
            tasks.append(asyncio.create_task(self._watchdog_forever(interval), name="watchdog"))
        return tasks

    async def prune_once(self) -> int:
        """Delete everything past retention, one small batch at a time; returns rows deleted."""
        cutoff = time.time() - self.current().config.daemon.retention
        total = 0
        while True:
            deleted = await self.spool.verbs.prune(cutoff, PRUNE_BATCH)
            total += deleted
            if deleted == 0:
                break
            await asyncio.sleep(0.05)  # let deliveries and intake go first
        if total:
            log.info(
                "retention pruned", rows=total, retention_s=self.current().config.daemon.retention
            )
        return total

    async def _prune_forever(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception as exc:
                log.error("retention pruning failed; will try again", error=str(exc))
            await asyncio.sleep(PRUNE_EVERY)

    async def _heartbeat_forever(self) -> None:
        """Keep this node live in the fleet's eyes; a beat that fails (the database is down)
        is simply the next one's job — the node is not live meanwhile, and says so once."""
        assert self.heartbeat is not None
        failing = False
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            try:
                await self.heartbeat()
            except Exception as exc:
                if not failing:
                    log.warning("node heartbeat not recorded; will try again", error=str(exc))
                failing = True
            else:
                failing = False

    async def _status_forever(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.notifier.status(await self.status_line())
            await asyncio.sleep(STATUS_EVERY)

    async def refresh_gauges(self) -> SpoolStats:
        """Set the spool and breaker gauges from the spool as it is now."""
        stats = await self.spool.stats()
        for state, count in stats.by_state.items():
            self.metrics.spool_deliveries.labels(state).set(count)
        self.metrics.oldest_pending.set(stats.oldest_pending_age or 0)
        self.metrics.sla_timers_pending.set(stats.timers_pending)
        self.metrics.breakers_open.set(len(self.breakers.open_destinations()))
        return stats

    async def status_line(self) -> str:
        """A short summary for systemd's STATUS= and `systemctl status`."""
        stats = await self.refresh_gauges()
        done = stats.by_state.get("done", 0)
        now = time.monotonic()
        per_minute = 0.0
        if self._done_before is not None and now > self._done_at:
            per_minute = max(0.0, (done - self._done_before) * 60 / (now - self._done_at))
        self._done_before, self._done_at = done, now
        pending = stats.by_state.get("pending", 0) + stats.by_state.get("inflight", 0)
        return (
            f"generation {self.current().number}; {pending} queued, "
            f"{stats.by_state.get('dead', 0)} dead; {per_minute:.0f} delivered/min"
        )

    async def _watchdog_forever(self, interval: float) -> None:
        while self.healthy():
            self.notifier.watchdog()
            await asyncio.sleep(interval)
        log.error("not healthy: systemd watchdog pings stopped, expect a restart")
