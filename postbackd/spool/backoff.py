"""Waiting out a spool that cannot be written (a full disk, a read-only file system).

DESIGN §9: a full disk never ends the daemon. The dispatcher and the recording of outcomes meet
`SpoolUnavailable` like any other transient failure: they wait (0.5 s, doubling up to 10 s, so
that recovery comes within seconds once space returns) and try again. The first failure of a
streak is logged as an error and its end as a notice — not one line per try.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from postbackd.logs import get_logger

log = get_logger("postbackd.storage")

FIRST_DELAY = 0.5
MOST_DELAY = 10.0


@dataclass
class StorageBackoff:
    """The retry state of one kind of spool write (`what`: "claiming deliveries", ...)."""

    what: str
    failures: int = 0

    @property
    def delay(self) -> float:
        """How long to wait before the next try, after `failures` failures in a row."""
        if self.failures == 0:
            return 0.0
        return min(FIRST_DELAY * 2 ** (self.failures - 1), MOST_DELAY)

    def failed(self, error: BaseException, **ids: object) -> float:
        """Count a failure (logging the first of a streak); returns the delay before retrying."""
        self.failures += 1
        if self.failures == 1:
            log.error(
                "spool cannot be written; retrying with backoff until it can",
                what=self.what,
                error=str(error),
                **ids,
            )
        return self.delay

    def succeeded(self) -> None:
        if self.failures:
            log.warning("spool writable again", what=self.what, failed_tries=self.failures)
        self.failures = 0

    async def wait(self, error: BaseException, **ids: object) -> None:
        """`failed`, then sleep the delay."""
        await asyncio.sleep(self.failed(error, **ids))
