"""The operator's verbs on the spool: retry, resend, hold, release, purge, prune, erase, and
the spool's side of a backfill.

What each verb may touch is decided here, once for every backend: the states it acts on, the
selectors it needs, the errors a user sees for a wrong state. A backend only carries out a
`Selection` (`VerbStore`): one transaction per verb. The spool holds an `OperatorVerbs` as
``spool.verbs``, so the event path and the operator's commands stay apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from postbackd.spool.model import (
    NO_FILTER,
    DeliveryState,
    ErasedCounts,
    ListFilter,
    NewDelivery,
    Selection,
    StoredEvent,
    parse_state,
)

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

    async def count(self, selection: Selection) -> int:
        """How many deliveries the selection names now (a dry run's answer)."""
        ...

    async def resend(self, selection: Selection, rerender: bool) -> int:
        """Due now on a fresh schedule; `rerender` drops the stored payload. Returns the count."""
        ...

    async def stored_events(
        self, customer: str, since: float, until: float | None, after_seq: int, limit: int
    ) -> list[StoredEvent]:
        """The customer's events received in [since, until) after `after_seq`, oldest first."""
        ...

    async def missing_ids(self, ids: Sequence[str]) -> list[str]:
        """Those of `ids` no delivery has."""
        ...

    async def add_deliveries(self, rows: Sequence[tuple[str, NewDelivery]]) -> int:
        """(event id, delivery) pairs for stored events; existing ids are skipped."""
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
        where: ListFilter = NO_FILTER,
        dry_run: bool = False,
    ) -> int:
        """Due now: dead/failed/held/pending/cancelled (never inflight or done).

        Dead, failed and cancelled deliveries start a fresh schedule (`attempts` back to 0).
        With neither ids nor state: pending, dead and failed ones. `where` narrows by the
        request log's filters (its state counts as `state`); `dry_run` only counts.
        """
        if state is None and where.state is not None:
            state = str(where.state)
        if state is not None:
            states: tuple[S, ...] = (parse_state(state),)
            if states[0] not in RETRYABLE:
                raise ValueError(f"{state} deliveries cannot be retried")
        else:
            states = RETRYABLE if ids is not None else RETRY_ALL
        selection = Selection.of(
            ids=ids, states=states, customer=customer, destination=destination, where=where
        )
        if dry_run:
            return await self._store.count(selection)
        return await self._store.retry(selection)

    async def resend(
        self,
        ids: Sequence[str] | None = None,
        *,
        where: ListFilter = NO_FILTER,
        rerender: bool = False,
        dry_run: bool = False,
    ) -> int:
        """Done deliveries sent again: the same payload (and delivery id, so the receiver
        sees the same ``webhook-id``), or with `rerender` the event rendered again with the
        trigger's current template. Ids or at least one filter are required, so that no
        slip resends a spool's whole history."""
        if where.state is not None and where.state is not S.DONE:
            raise ValueError(f"only done deliveries can be resent, not {where.state} ones")
        if ids is None and where == NO_FILTER:
            raise ValueError(
                "resend needs delivery ids or a filter (customer, trigger, order, event type, "
                "destination, since or until)"
            )
        selection = Selection.of(ids=ids, states=(S.DONE,), where=where)
        if dry_run:
            return await self._store.count(selection)
        return await self._store.resend(selection, rerender)

    async def hold(
        self,
        ids: Sequence[str] | None = None,
        *,
        customer: str | None = None,
        reason: str = "held by operator",
        where: ListFilter = NO_FILTER,
        dry_run: bool = False,
    ) -> int:
        """pending → held: never attempted until released."""
        selection = Selection.of(ids=ids, states=(S.PENDING,), customer=customer, where=where)
        if dry_run:
            return await self._store.count(selection)
        return await self._store.hold(selection, reason)

    async def release(
        self,
        ids: Sequence[str] | None = None,
        *,
        customer: str | None = None,
        where: ListFilter = NO_FILTER,
        dry_run: bool = False,
    ) -> int:
        """held → pending, due now."""
        selection = Selection.of(ids=ids, states=(S.HELD,), customer=customer, where=where)
        if dry_run:
            return await self._store.count(selection)
        return await self._store.release(selection)

    async def purge(
        self,
        ids: Sequence[str] | None = None,
        *,
        state: str | None = None,
        customer: str | None = None,
        dry_run: bool = False,
    ) -> int:
        """Delete deliveries and their attempts; at least one selector is required."""
        if ids is None and state is None and customer is None:
            raise ValueError("purge needs delivery ids, a state or a customer")
        states = () if state is None else (parse_state(state),)
        selection = Selection.of(ids=ids, states=states, customer=customer)
        if dry_run:
            return await self._store.count(selection)
        return await self._store.purge(selection)

    async def stored_events(
        self, customer: str, since: float, until: float | None, after_seq: int, limit: int
    ) -> list[StoredEvent]:
        """A page of stored events for a backfill (`postbackd.backfill`), oldest first."""
        return await self._store.stored_events(customer, since, until, after_seq, limit)

    async def missing_ids(self, ids: Sequence[str]) -> list[str]:
        """Those of `ids` that no delivery has yet (what a backfill would add)."""
        return await self._store.missing_ids(ids)

    async def add_deliveries(self, rows: Sequence[tuple[str, NewDelivery]]) -> int:
        """Deliveries for stored events, in one transaction; ids that exist are skipped."""
        for _, new in rows:
            if new.state not in (S.PENDING, S.FAILED):
                raise ValueError(f"delivery {new.id}: a backfilled delivery cannot be {new.state}")
        return await self._store.add_deliveries(rows)

    async def prune(self, older_than: float, batch: int = 500) -> int:
        """One batch of retention: finished deliveries with finished_at < older_than (and their
        attempts), then events received before it with no delivery left. Call until 0."""
        return await self._store.prune(older_than, batch)

    async def erase_order(self, order_id: str) -> ErasedCounts:
        """Delete an order's events, deliveries and request log (personal data erasure)."""
        return await self._store.erase_order(order_id)
