"""The retry policy: when the next attempt is due, and whether there is one at all.

A schedule of N delays means at most N + 1 attempts; each delay gets ±20 % jitter so that a
burst of failures does not come back as a burst. A receiver's ``Retry-After`` (429/503) wins
over the schedule's step but still uses one of the attempts, and is capped so that a hostile
or broken header cannot park a delivery for a year.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

JITTER = 0.2
MAX_RETRY_AFTER = 24 * 3600.0


@dataclass(frozen=True)
class RetryDecision:
    """What to do after a failed attempt: retry after `delay` seconds, or give up (dead)."""

    retry: bool
    delay: float = 0.0
    reason: str = ""


def decide(
    delays: tuple[float, ...],
    attempts_made: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Decide after attempt number `attempts_made` (1-based) failed temporarily."""
    if attempts_made > len(delays):
        if not delays:
            return RetryDecision(False, reason="retry is off for this trigger: one attempt only")
        return RetryDecision(
            False, reason=f"gave up after {attempts_made} attempts (retry schedule exhausted)"
        )
    if retry_after is not None and retry_after >= 0:
        return RetryDecision(True, min(retry_after, MAX_RETRY_AFTER), "Retry-After")
    base = delays[attempts_made - 1]
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return RetryDecision(True, base * spread, "schedule")
