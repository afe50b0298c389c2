"""The durable store of events, deliveries and the request log, behind one interface (DESIGN §10).

`Spool` is everything the event path (intake, dispatcher, attempts), the operator's verbs
(``spool.verbs``), the CLI, the admin API and the UI ask of a spool; nothing above this package
knows which backend answers. `open_spool` picks the backend from ``[daemon] spool``: a path is
the embedded SQLite spool (`postbackd.spool.sqlite`), a ``postgresql://`` URL the database a
fleet of nodes shares (`postbackd.spool.postgres`, with the optional extra asyncpg).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

from postbackd.config.model import is_database_url
from postbackd.events import Event
from postbackd.spool.backoff import StorageBackoff
from postbackd.spool.model import (
    FINAL_STATES,
    HEARTBEAT_EVERY,
    ID_MATCHES_SHOWN,
    LIVE_FOR,
    MIN_ID_PREFIX,
    NO_FILTER,
    TRIGGER_INACTIVE,
    AmbiguousDeliveryId,
    AttemptRecord,
    AttemptResult,
    BatchAttempt,
    BatchRow,
    DeliveryDetail,
    DeliveryIdError,
    DeliveryState,
    DeliverySummary,
    ErasedCounts,
    ListFilter,
    MinuteCount,
    NewBatch,
    NewDelivery,
    NodeBeat,
    OpenWindow,
    Selection,
    SlaTimer,
    SpoolError,
    SpoolStats,
    StoredBatch,
    StoredDelivery,
    StoredEvent,
    SubmitOutcome,
    Throughput,
    TimerCancel,
    TimerChange,
    TimerStart,
    TimerState,
    TriggerSync,
    UnknownDeliveryId,
    choose_delivery_id,
    parse_state,
)
from postbackd.spool.sqlite import SqliteSpool
from postbackd.spool.verbs import RETRYABLE, OperatorVerbs


class Spool(Protocol):
    """A spool, open; `close()` it at the end."""

    verbs: OperatorVerbs

    @property
    def closed(self) -> bool:
        """Closed at shutdown: writes are refused for good, not for now."""
        ...

    @property
    def owner(self) -> bool:
        """Whether this process recovered the spool at open and may hand its work out."""
        ...

    @property
    def available(self) -> bool:
        """Whether the spool can take writes now (False while its database is unreachable:
        ``/readyz`` answers 503 and intake 503 until it is back)."""
        ...

    def on_new_work(self, wake: Callable[[], None]) -> None:
        """Call `wake` when work may have become due that this process did not write itself
        (another node's intake, an operator's retry from elsewhere)."""
        ...

    async def close(self) -> None: ...

    # intake ------------------------------------------------------------------------------
    async def submit(
        self, event: Event, deliveries: Sequence[NewDelivery], *, source: str
    ) -> SubmitOutcome: ...

    async def submit_many(
        self,
        routed: Sequence[tuple[Event, Sequence[NewDelivery]]],
        *,
        source: str,
        timers: Sequence[TimerChange] = (),
    ) -> list[SubmitOutcome]:
        """Commit events with their deliveries in one transaction: all stored, or none (raises
        `SpoolUnavailable`); a known event id is a duplicate and adds nothing. `timers` are the
        ``[[sla]]`` timers the events start or cancel, applied in the same transaction for the
        events stored (not for duplicates)."""
        ...

    # [[sla]] timers ------------------------------------------------------------------------
    async def next_timer_due(self) -> float | None:
        """When the earliest pending timer is due (or its claim ends); None: no timer pends."""
        ...

    async def claim_due_timers(self, now: float, lease: float, limit: int) -> list[SlaTimer]:
        """Up to `limit` timers due at `now` that nobody is firing, claimed for `lease`
        seconds (another node of a fleet skips them; a claim that runs out is taken again)."""
        ...

    async def finish_timer(self, timer_id: str, state: TimerState, note: str) -> bool:
        """End a pending timer (fired, or cancelled); False when it was no longer pending."""
        ...

    async def list_timers(
        self, state: TimerState | None = "pending", limit: int = 100
    ) -> list[SlaTimer]:
        """Timers in `state` (None: all), pending ones by due time, others newest first."""
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

    # shipment files (postbackd.batching) --------------------------------------------------
    async def closed_windows(self, now: float, limit: int = 0) -> list[OpenWindow]:
        """Batch windows that ended by `now` with deliveries not yet in a file (at most
        `limit` windows; 0: a backend's default)."""
        ...

    async def seal_batch(self, batch: NewBatch) -> bool:
        """Store a shipment file and bind its deliveries to it, in one transaction; False
        (nothing stored) when one of them changed meanwhile or the file already exists."""
        ...

    async def claim_batches(self, now: float, limit: int, lease: float) -> list[StoredBatch]:
        """Take up to `limit` due files to send; another node takes one only after `lease`."""
        ...

    async def next_batch_due(self) -> float | None:
        """When a window next closes or a file is next due (None: nothing waits)."""
        ...

    async def record_batch_attempt(self, result: BatchAttempt) -> bool:
        """Move a file and its deliveries on, logging the attempt for each delivery; False
        when the file is gone."""
        ...

    # the fleet's nodes ------------------------------------------------------------------
    async def heartbeat(self, beat: NodeBeat) -> None:
        """Record the daemon as a live node running `beat`'s configuration (at start, at each
        reload and every `HEARTBEAT_EVERY`); a shared spool records it under its node name."""
        ...

    async def live_nodes(self) -> list[NodeBeat]:
        """The nodes whose heartbeat is recent (a SQLite spool: the daemon itself)."""
        ...

    async def leave_to_others(self, delivery_id: str, trigger: str) -> bool:
        """This node claimed a delivery of a trigger it does not know: True when another live
        node delivers that trigger and the delivery was put back for it; False when none does
        (or the spool has one node) and the caller settles it."""
        ...

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

    # the order's history -----------------------------------------------------------------
    async def previous_event(
        self, customer: str, order_id: str, before_event_id: str
    ) -> dict[str, Any] | None:
        """The envelope of the customer's last stored event of `order_id` before
        `before_event_id` (stored earlier; all of them when that event is not stored yet), or
        None. It is what templates' ``changes`` compare with (see `postbackd.changes`)."""
        ...


def spool_missing(target: Path | str) -> bool:
    """Whether the spool is certainly not there (a file that does not exist): commands that
    only read must not create an empty spool by a typo. A database answers for itself."""
    return not is_database_url(target) and not Path(target).is_file()


async def open_spool(
    target: Path | str,
    *,
    synchronous: str = "FULL",
    min_free: int = 0,
    exclusive: bool = False,
    node: str | None = None,
    lease: float = 30.0,
) -> Spool:
    """Open (create, migrate) the spool named by ``[daemon] spool``.

    `exclusive=True` (the daemon) insists on owning it and raises `SpoolError` when another
    process keeps it; otherwise ownership is taken only if free (the CLI). On a database every
    daemon is a node of one fleet: `node` names it (default the host name) in claims and the
    request log, `lease` is how long its claims last unless renewed; it waits for a database
    that cannot be reached yet, where the CLI fails at once.
    """
    if is_database_url(target):
        try:
            from postbackd.spool.postgres.store import PostgresSpool
        except ImportError as exc:
            raise SpoolError(
                f"[daemon] spool is a PostgreSQL URL but asyncpg cannot be imported ({exc}): "
                "install postbackd[postgres]"
            ) from None
        return await PostgresSpool.open(str(target), node=node, lease=lease, daemon=exclusive)
    return await SqliteSpool.open(
        Path(target), synchronous=synchronous, min_free=min_free, exclusive=exclusive
    )


__all__ = [
    "FINAL_STATES",
    "HEARTBEAT_EVERY",
    "ID_MATCHES_SHOWN",
    "LIVE_FOR",
    "MIN_ID_PREFIX",
    "NO_FILTER",
    "RETRYABLE",
    "TRIGGER_INACTIVE",
    "AmbiguousDeliveryId",
    "AttemptRecord",
    "AttemptResult",
    "BatchAttempt",
    "BatchRow",
    "DeliveryDetail",
    "DeliveryIdError",
    "DeliveryState",
    "DeliverySummary",
    "ErasedCounts",
    "ListFilter",
    "MinuteCount",
    "NewBatch",
    "NewDelivery",
    "NodeBeat",
    "OpenWindow",
    "OperatorVerbs",
    "Selection",
    "SlaTimer",
    "Spool",
    "SpoolError",
    "SpoolStats",
    "StorageBackoff",
    "StoredBatch",
    "StoredDelivery",
    "StoredEvent",
    "SubmitOutcome",
    "Throughput",
    "TimerCancel",
    "TimerChange",
    "TimerStart",
    "TimerState",
    "TriggerSync",
    "UnknownDeliveryId",
    "choose_delivery_id",
    "is_database_url",
    "open_spool",
    "parse_state",
    "spool_missing",
]
