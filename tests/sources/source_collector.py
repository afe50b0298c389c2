"""A real `submit` for source tests: records events like the spool would, by id.

It answers `SubmitResult(duplicate=True)` for an id it has seen (ingest is idempotent), can be
told to be unavailable (raise `SpoolUnavailable`) for a number of calls, and can reject chosen
ids with `EventRejected`, so a source's handling of each answer is exercised for real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from postbackd.events import Event, EventRejected
from postbackd.plugin import SpoolUnavailable, SubmitResult


class Collector:
    def __init__(self, delay: float = 0.0) -> None:
        self.events: dict[str, Event] = {}
        self.calls = 0
        self.batches = 0
        self.unavailable_calls = 0
        self.delay = delay
        self.reject_ids: set[str] = set()
        self._unavailable_left = 0
        self._changed = asyncio.Event()

    def unavailable_for(self, calls: int) -> None:
        """The next `calls` submits raise SpoolUnavailable."""
        self._unavailable_left = calls

    async def __call__(self, event: Event) -> SubmitResult:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._unavailable_left > 0:
            self._unavailable_left -= 1
            self.unavailable_calls += 1
            raise SpoolUnavailable("spool unavailable (test collector)")
        if event.id in self.reject_ids:
            raise EventRejected("rejected by the test collector", "id")
        duplicate = event.id in self.events
        self.events.setdefault(event.id, event)
        self._changed.set()
        return SubmitResult(event_id=event.id, duplicate=duplicate, deliveries=0)

    async def many(self, events: Sequence[Event]) -> list[SubmitResult]:
        """A batch the daemon's way: every event stored, or — when it raises — none."""
        self.batches += 1
        if self._unavailable_left > 0:
            self._unavailable_left -= 1
            self.unavailable_calls += 1
            raise SpoolUnavailable("spool unavailable (test collector)")
        if any(event.id in self.reject_ids for event in events):
            raise EventRejected("rejected by the test collector", "id")
        results = []
        for event in events:
            results.append(SubmitResult(event.id, duplicate=event.id in self.events, deliveries=0))
            self.events.setdefault(event.id, event)
        self._changed.set()
        return results

    @property
    def submits(self) -> int:
        """Calls of either kind: one event, or a batch."""
        return self.calls + self.batches

    @property
    def ids(self) -> set[str]:
        return set(self.events)

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        """Wait until `condition()` holds; fails the test with what was seen after `timeout`."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"condition not met within {timeout}s: {len(self.events)} events, "
                    f"{self.calls} calls, {self.unavailable_calls} unavailable"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(left, 0.2))
            except TimeoutError:
                pass

    async def wait_count(self, count: int, timeout: float = 20.0) -> None:
        await self.wait_for(lambda: len(self.events) >= count, timeout)


async def eventually(condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll `condition` (bounded) for effects a collector does not see (files, queues)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout}s: {what or condition}")
        await asyncio.sleep(0.05)
