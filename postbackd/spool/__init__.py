"""The durable store of events, deliveries and the request log, behind one interface (DESIGN §10).

`Spool` is everything the event path (intake, dispatcher, attempts), the operator's verbs
(``spool.verbs``), the CLI, the admin API and the UI ask of a spool; nothing above this package
knows which backend answers. `open_spool` picks the backend from ``[daemon] spool``: a path is
the embedded SQLite spool (`postbackd.spool.sqlite`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

from postbackd.events import Event
from postbackd.spool.model import (
    FINAL_STATES,
    NO_FILTER,
    TRIGGER_INACTIVE,
    AttemptRecord,
    AttemptResult,
    DeliveryDetail,
    DeliveryState,
    DeliverySummary,
    ErasedCounts,
    ListFilter,
    MinuteCount,
    NewDelivery,
    Selection,
    SpoolError,
    SpoolStats,
    StoredDelivery,
    SubmitOutcome,
    Throughput,
    TriggerSync,
    parse_state,
)
from postbackd.spool.sqlite import SqliteSpool
from postbackd.spool.verbs import RETRYABLE, OperatorVerbs


class Spool(Protocol):
    """A spool, open; `close()` it at the end."""

    path: Path
    verbs: OperatorVerbs

    @property
    def owner(self) -> bool:
        """Whether this process recovered the spool at open and may hand its work out."""
        ...

    async def close(self) -> None: ...

    # intake ------------------------------------------------------------------------------
    async def submit(
        self, event: Event, deliveries: Sequence[NewDelivery], *, source: str
    ) -> SubmitOutcome: ...

    async def submit_many(
        self, routed: Sequence[tuple[Event, Sequence[NewDelivery]]], *, source: str
    ) -> list[SubmitOutcome]:
        """Commit events with their deliveries in one transaction: all stored, or none (raises
        `SpoolUnavailable`); a known event id is a duplicate and adds nothing."""
        ...

    # dispatcher --------------------------------------------------------------------------
    async def claim_due(
        self,
        now: float,
        limit: int,
        exclude: Collection[str] = (),
        *,
        exclude_destinations: Collection[str] = (),
    ) -> list[StoredDelivery]: ...

    async def next_due_at(self, exclude_destinations: Collection[str] = ()) -> float | None: ...

    def record_attempt(self, result: AttemptResult) -> asyncio.Future[bool]: ...

    async def release_inflight(self, ids: Sequence[str], next_attempt_at: float) -> int: ...

    async def hold_inflight(self, delivery_id: str, reason: str) -> bool: ...

    async def set_rendered(
        self,
        delivery_id: str,
        body: bytes | None,
        subject: str | None,
        render_error: str | None,
        *,
        format: str | None = None,
        content_type: str | None = None,
    ) -> bool: ...

    async def sync_triggers(
        self, active: Collection[str], inactive: Collection[str]
    ) -> TriggerSync: ...

    # the request log ---------------------------------------------------------------------
    async def stats(self) -> SpoolStats: ...

    async def list_deliveries(
        self, filters: ListFilter = NO_FILTER, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[DeliverySummary], str | None]: ...

    async def throughput(self, minutes: int = 60, now: float | None = None) -> Throughput: ...

    async def get_delivery(self, delivery_id: str) -> DeliveryDetail | None: ...

    # the order's history -----------------------------------------------------------------
    async def previous_event(
        self, customer: str, order_id: str, before_event_id: str
    ) -> dict[str, Any] | None:
        """The envelope of the customer's last stored event of `order_id` before
        `before_event_id` (stored earlier; all of them when that event is not stored yet), or
        None. It is what templates' ``changes`` compare with (see `postbackd.changes`)."""
        ...


async def open_spool(
    target: Path | str,
    *,
    synchronous: str = "FULL",
    min_free: int = 0,
    exclusive: bool = False,
) -> Spool:
    """Open (create, migrate) the spool named by ``[daemon] spool``.

    `exclusive=True` (the daemon) insists on owning it and raises `SpoolError` when another
    process keeps it; otherwise ownership is taken only if free (the CLI).
    """
    return await SqliteSpool.open(
        Path(target), synchronous=synchronous, min_free=min_free, exclusive=exclusive
    )


__all__ = [
    "FINAL_STATES",
    "NO_FILTER",
    "RETRYABLE",
    "TRIGGER_INACTIVE",
    "AttemptRecord",
    "AttemptResult",
    "DeliveryDetail",
    "DeliveryState",
    "DeliverySummary",
    "ErasedCounts",
    "ListFilter",
    "MinuteCount",
    "NewDelivery",
    "OperatorVerbs",
    "Selection",
    "Spool",
    "SpoolError",
    "SpoolStats",
    "StoredDelivery",
    "SubmitOutcome",
    "Throughput",
    "TriggerSync",
    "open_spool",
    "parse_state",
]
