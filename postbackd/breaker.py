"""Per-destination circuit breakers: stop hammering a receiver that keeps failing.

A destination (scheme + host + port) that fails `failures` times in a row opens its breaker.
While open, its deliveries wait — they are neither attempted nor counted as attempts. After
the cooldown one probe is let through; success closes the breaker, failure reopens it with
the cooldown doubled (at most `MAX_COOLDOWN`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MAX_COOLDOWN = 600.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    PROBING = "probing"


@dataclass
class _Breaker:
    failures: int = 0
    state: BreakerState = BreakerState.CLOSED
    cooldown: float = 0.0
    reopen_at: float = 0.0
    opened_at: float = 0.0  # when it first opened: probes that fail do not restart the episode


@dataclass(frozen=True)
class Admission:
    """Whether an attempt may go to its destination now; if not, when to look again."""

    allowed: bool
    probe: bool = False
    wait_until: float = 0.0


ADMITTED = Admission(True)  # the answer for a healthy destination, nearly every time


class BreakerBoard:
    """The breakers of all destinations. Runs on the event loop only (no locking needed)."""

    def __init__(self, failures: int, cooldown: float) -> None:
        self.threshold = failures
        self.base_cooldown = cooldown
        self._breakers: dict[str, _Breaker] = {}

    def configure(self, failures: int, cooldown: float) -> None:
        """Apply new settings (on reload); open breakers keep their current cooldown, unless
        breakers are turned off (0): then none is open any more (nor reported failing)."""
        self.threshold = failures
        self.base_cooldown = cooldown
        if failures <= 0:
            self._breakers.clear()

    def admit(self, destination: str, now: float) -> Admission:
        breaker = self._breakers.get(destination)
        if breaker is None or breaker.state is BreakerState.CLOSED or self.threshold <= 0:
            return ADMITTED
        if breaker.state is BreakerState.OPEN and now >= breaker.reopen_at:
            breaker.state = BreakerState.PROBING
            return Admission(True, probe=True)
        return Admission(False, wait_until=max(breaker.reopen_at, now + 1.0))

    def record(self, destination: str, success: bool, now: float) -> bool:
        """Record an attempt's result; returns True when this opened (or reopened) the breaker."""
        if self.threshold <= 0:
            return False
        if success:
            self._breakers.pop(destination, None)
            return False
        breaker = self._breakers.setdefault(destination, _Breaker())
        breaker.failures += 1
        if breaker.state is BreakerState.PROBING:
            breaker.cooldown = min(breaker.cooldown * 2, MAX_COOLDOWN)
        elif breaker.state is BreakerState.CLOSED and breaker.failures >= self.threshold:
            breaker.cooldown = min(self.base_cooldown, MAX_COOLDOWN)
            breaker.opened_at = now
        else:
            return False
        breaker.state = BreakerState.OPEN
        breaker.reopen_at = now + breaker.cooldown
        return True

    def release_probe(self, destination: str, now: float) -> None:
        """A probe ended without testing the destination (cancelled): let another try now."""
        breaker = self._breakers.get(destination)
        if breaker is not None and breaker.state is BreakerState.PROBING:
            breaker.state = BreakerState.OPEN
            breaker.reopen_at = now

    def open_destinations(self) -> dict[str, float]:
        """Destinations whose breaker is not closed, with when they may be probed next."""
        return {
            name: b.reopen_at
            for name, b in self._breakers.items()
            if b.state is not BreakerState.CLOSED
        }

    def open_since(self) -> dict[str, float]:
        """Destinations whose breaker is not closed, with when it first opened (the episode
        the operational alerts report: `postbackd.alerts`)."""
        return {
            name: b.opened_at
            for name, b in self._breakers.items()
            if b.state is not BreakerState.CLOSED
        }
