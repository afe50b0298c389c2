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
from typing import Protocol

from postbackd.events import Event
from postbackd.spool.backoff import StorageBackoff
from postbackd.spool.model import (
    FINAL_STATES,
    ID_MATCHES_SHOWN,
    MIN_ID_PREFIX,
    NO_FILTER,
    TRIGGER_INACTIVE,
    AmbiguousDeliveryId,
    AttemptRecord,
    AttemptResult,
    DeliveryDetail,
    DeliveryIdError,
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
    UnknownDeliveryId,
    choose_delivery_id,
    parse_state,
)
from postbackd.spool.sqlite import SqliteSpool
from postbackd.spool.verbs import RETRYABLE, OperatorVerbs


class Spool(Protocol):
    """A spool, open; `close()` it at the end."""

    path: Path
    verbs: OperatorVerbs

    @property
    def closed(self) -> bool:
        """Closed at shutdown: writes are refused for good, not for now."""
        ...

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

    async def match_delivery_ids(self, given: str, limit: int = ID_MATCHES_SHOWN + 1) -> list[str]:
        """The ids `given` (a whole id, or a prefix of `MIN_ID_PREFIX` or more characters) may
        stand for, in id order, at most `limit`."""
        ...

    async def resolve_delivery_id(self, given: str) -> str:
        """The one delivery `given` names (`choose_delivery_id` over `match_delivery_ids`)."""
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
    "ID_MATCHES_SHOWN",
    "MIN_ID_PREFIX",
    "NO_FILTER",
    "RETRYABLE",
    "TRIGGER_INACTIVE",
    "AmbiguousDeliveryId",
    "AttemptRecord",
    "AttemptResult",
    "DeliveryDetail",
    "DeliveryIdError",
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
    "StorageBackoff",
    "StoredDelivery",
    "SubmitOutcome",
    "Throughput",
    "TriggerSync",
    "UnknownDeliveryId",
    "choose_delivery_id",
    "open_spool",
    "parse_state",
]
