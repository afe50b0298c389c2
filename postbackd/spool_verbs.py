"""The operator's verbs on the spool: retry, hold, release, purge, prune, erase.

A part of `Spool` (which it is mixed into) kept apart from the event path: each verb is one
group-committed write through the spool's writer, selected by ids, state, customer or
destination (`spool_rows.selection`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from postbackd import spool_writes
from postbackd.spool_model import DeliveryState, ErasedCounts
from postbackd.spool_rows import parse_state, selection
from postbackd.spool_threads import Operation

S = DeliveryState
RETRYABLE = (S.DEAD, S.FAILED, S.HELD, S.PENDING, S.CANCELLED)
RETRY_ALL = (S.PENDING, S.DEAD, S.FAILED)
"""What `retry()` touches with no ids and no state: not held (an operator's or an inactive
trigger's decision) and not cancelled (superseded or removed on purpose)."""


class OperatorVerbs:
    """Mixed into `Spool`, which provides `_write`."""

    if TYPE_CHECKING:

        def _write(self, operation: Operation, *, durable: bool = True) -> asyncio.Future[Any]: ...

    async def retry(
        self,
        ids: Sequence[str] | None = None,
        *,
        state: str | None = None,
        destination: str | None = None,
        customer: str | None = None,
    ) -> int:
        """Due now: dead/failed/held/pending/cancelled (never inflight or done).

        Dead, failed and cancelled deliveries start a fresh schedule (`attempts` back to 0).
        With neither ids nor state: pending, dead and failed ones.
        """
        if state is not None:
            states: tuple[S, ...] = (parse_state(state),)
            if states[0] not in RETRYABLE:
                raise ValueError(f"{state} deliveries cannot be retried")
        else:
            states = RETRYABLE if ids is not None else RETRY_ALL
        where, params = selection(
            ids=ids, states=states, customer=customer, destination=destination
        )
        count: int = await self._write(lambda conn: spool_writes.retry(conn, where, params))
        return count

    async def hold(
        self,
        ids: Sequence[str] | None = None,
        *,
        customer: str | None = None,
        reason: str = "held by operator",
    ) -> int:
        """pending → held: never attempted until released."""
        where, params = selection(ids=ids, states=(S.PENDING,), customer=customer)
        count: int = await self._write(lambda conn: spool_writes.hold(conn, where, params, reason))
        return count

    async def release(
        self, ids: Sequence[str] | None = None, *, customer: str | None = None
    ) -> int:
        """held → pending, due now."""
        where, params = selection(ids=ids, states=(S.HELD,), customer=customer)
        count: int = await self._write(lambda conn: spool_writes.release(conn, where, params))
        return count

    async def purge(
        self,
        ids: Sequence[str] | None = None,
        *,
        state: str | None = None,
        customer: str | None = None,
    ) -> int:
        """Delete deliveries and their attempts; at least one selector is required."""
        if ids is None and state is None and customer is None:
            raise ValueError("purge needs delivery ids, a state or a customer")
        states = () if state is None else (parse_state(state),)
        where, params = selection(ids=ids, states=states, customer=customer)
        count: int = await self._write(lambda conn: spool_writes.purge(conn, where, params))
        return count

    async def prune(self, older_than: float, batch: int = 500) -> int:
        """One batch of retention: finished deliveries with finished_at < older_than (and their
        attempts), then events received before it with no delivery left. Call until 0."""
        count: int = await self._write(lambda conn: spool_writes.prune(conn, older_than, batch))
        return count

    async def erase_order(self, order_id: str) -> ErasedCounts:
        """Delete an order's events, deliveries and request log (personal data erasure)."""
        erased: ErasedCounts = await self._write(
            lambda conn: spool_writes.erase_order(conn, order_id)
        )
        return erased
