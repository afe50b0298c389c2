"""Turns per order for the AMQP source: statuses of one order are stored in queue order.

The source handles up to ``prefetch`` messages at once, so the spool can commit them in groups.
Two messages about one order must still be committed in the order the queue delivered them —
else an ``ordered = true`` trigger would send "delivered" before "in transit" — so a message
waits for the earlier messages in hand about the same order (same customer and
``data.orderId``), and for nothing else. When such an earlier message could not be stored (it
goes back to the queue), the later one goes back too instead of overtaking it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType

from postbackd.events import Event

OrderKey = tuple[str, str]


class OrderTurns:
    """Hands out a `Turn` per message; `take` must be called in the order messages arrive."""

    def __init__(self) -> None:
        self._last: dict[OrderKey, asyncio.Future[bool]] = {}

    def take(self, events: Iterable[Event]) -> Turn:
        """The message's place behind earlier messages about the same orders (synchronous)."""
        keys = frozenset((e.customer, e.order_id) for e in events if e.order_id is not None)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        before = {self._last[key] for key in keys if key in self._last}
        for key in keys:
            self._last[key] = done
        return Turn(self, keys, before, done)

    def _forget(self, turn: Turn) -> None:
        for key in turn.keys:
            if self._last.get(key) is turn.done:
                del self._last[key]


class EarlierNotStored(Exception):
    """An earlier message about the same order was not stored: this one must not overtake it."""


class Turn:
    """``async with turn:`` waits for the earlier messages, and lets the later ones go on exit.

    Leaving the block with an exception counts as "not stored" for the messages behind; so does
    a handler task that never ran (`release` from its done-callback).
    """

    def __init__(
        self,
        turns: OrderTurns,
        keys: frozenset[OrderKey],
        before: set[asyncio.Future[bool]],
        done: asyncio.Future[bool],
    ) -> None:
        self.turns = turns
        self.keys = keys
        self.before = before
        self.done = done

    def release(self, stored: bool) -> None:
        """Let the later messages go; only the first call counts (safe to repeat)."""
        if not self.done.done():
            self.done.set_result(stored)
        self.turns._forget(self)

    async def __aenter__(self) -> Turn:
        try:
            if self.before:
                await asyncio.wait(self.before)  # never cancels the futures it waits for
                if not all(future.result() for future in self.before):
                    raise EarlierNotStored(
                        "an earlier message about the same order was not stored; this one goes "
                        "back to the queue too, so it does not overtake it"
                    )
        except BaseException:
            self.release(stored=False)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release(stored=exc_type is None)
