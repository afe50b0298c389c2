"""The operator's verbs on the spool: retry, hold, release, purge, prune, erase.

What each verb may touch is decided here, once for every backend: the states it acts on, the
selectors it needs, the errors a user sees for a wrong state. A backend only carries out a
`Selection` (`VerbStore`): one transaction per verb. The spool holds an `OperatorVerbs` as
``spool.verbs``, so the event path and the operator's commands stay apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from postbackd.spool.model import DeliveryState, ErasedCounts, Selection, parse_state

UNBIND_FINISHED_FILE = (
    "CASE WHEN batch_id IN (SELECT id FROM batches WHERE state <> 'pending') "
    "THEN NULL ELSE batch_id END"
)
"""SQL (both backends) for the `batch_id` of a delivery an operator retries or releases: one
whose shipment file is finished (sent, dead, cancelled) leaves it and waits in its window
again, so it goes out in one more file of that window; one whose file is still being sent
stays with it."""

S = DeliveryState
RETRYABLE = (S.DEAD, S.FAILED, S.HELD, S.PENDING, S.CANCELLED)
RETRY_ALL = (S.PENDING, S.DEAD, S.FAILED)
"""What `retry()` touches with no ids and no state: not held (an operator's or an inactive
trigger's decision) and not cancelled (superseded or removed on purpose)."""


class VerbStore(Protocol):
    """What a backend provides for the verbs; each call is one committed transaction."""

    async def retry(self, selection: Selection) -> int:
        """Due now; dead, failed and cancelled ones start a fresh schedule. Returns the count."""
        ...

    async def hold(self, selection: Selection, reason: str) -> int: ...

    async def release(self, selection: Selection) -> int: ...

    async def purge(self, selection: Selection) -> int:
        """Delete deliveries and their attempts (their events stay, for idempotency)."""
        ...

    async def prune(self, older_than: float, batch: int) -> int: ...

    async def erase_order(self, order_id: str) -> ErasedCounts: ...


class OperatorVerbs:
    def __init__(self, store: VerbStore) -> None:
        self._store = store

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
        return await self._store.retry(
            Selection.of(ids=ids, states=states, customer=customer, destination=destination)
        )

    async def hold(
        self,
        ids: Sequence[str] | None = None,
        *,
        customer: str | None = None,
        reason: str = "held by operator",
    ) -> int:
        """pending → held: never attempted until released."""
        return await self._store.hold(
            Selection.of(ids=ids, states=(S.PENDING,), customer=customer), reason
        )

    async def release(
        self, ids: Sequence[str] | None = None, *, customer: str | None = None
    ) -> int:
        """held → pending, due now."""
        return await self._store.release(Selection.of(ids=ids, states=(S.HELD,), customer=customer))

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
        return await self._store.purge(Selection.of(ids=ids, states=states, customer=customer))

    async def prune(self, older_than: float, batch: int = 500) -> int:
        """One batch of retention: finished deliveries with finished_at < older_than (and their
        attempts), then events received before it with no delivery left. Call until 0."""
        return await self._store.prune(older_than, batch)

    async def erase_order(self, order_id: str) -> ErasedCounts:
        """Delete an order's events, deliveries and request log (personal data erasure)."""
        return await self._store.erase_order(order_id)
