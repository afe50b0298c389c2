"""The values the spool takes and gives: delivery states and frozen row dataclasses.

Everything that crosses the line between the spool and its callers (router, dispatcher, API,
CLI, UI) is one of these; a backend's rows never leave its package (`postbackd.spool.sqlite`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal


class DeliveryState(StrEnum):
    """Where a delivery is in its life (DESIGN §6)."""

    PENDING = "pending"  # waiting for its next_attempt_at
    INFLIGHT = "inflight"  # claimed by the dispatcher, an attempt is running
    DONE = "done"
    DEAD = "dead"  # retries exhausted or permanent failure
    FAILED = "failed"  # the template could not be rendered
    CANCELLED = "cancelled"  # superseded, or its trigger was removed
    HELD = "held"  # paused by an operator or because its trigger is inactive


FINAL_STATES = frozenset(
    {DeliveryState.DONE, DeliveryState.DEAD, DeliveryState.FAILED, DeliveryState.CANCELLED}
)
"""States a delivery ends in: it has a `finished_at` and is pruned after the retention."""

TRIGGER_INACTIVE = "trigger inactive"
"""The `held_reason` of deliveries held because their trigger is inactive (see sync_triggers)."""


class SpoolError(RuntimeError):
    """The spool file cannot be used at all (newer schema, not a spool, unreadable)."""


MIN_ID_PREFIX = 4
"""The shortest delivery id prefix `Spool.resolve_delivery_id` looks up (a shorter text
matches only a whole id)."""
ID_MATCHES_SHOWN = 10
"""How many of the ids an ambiguous prefix starts are listed (`AmbiguousDeliveryId.matches`)."""


class DeliveryIdError(LookupError):
    """A delivery id or id prefix that does not name exactly one delivery."""

    def __init__(self, given: str, message: str) -> None:
        super().__init__(message)
        self.given = given
        self.message = message

    def __str__(self) -> str:
        return self.message


class UnknownDeliveryId(DeliveryIdError):
    """No delivery has this id, nor (for `MIN_ID_PREFIX` characters or more) one starting so."""

    def __init__(self, given: str) -> None:
        short = len(given) < MIN_ID_PREFIX
        hint = f" (an id prefix needs at least {MIN_ID_PREFIX} characters)" if short else ""
        super().__init__(given, f"no delivery with id {given}{hint}")


class AmbiguousDeliveryId(DeliveryIdError):
    """Several delivery ids start with the prefix: `matches` (the first `ID_MATCHES_SHOWN` in
    id order), `more` when there are others besides."""

    def __init__(self, given: str, matches: Sequence[str], more: bool) -> None:
        self.matches = tuple(matches)
        self.more = more
        listed = ", ".join(self.matches) + (", …" if more else "")
        super().__init__(
            given,
            f"delivery id prefix {given} is ambiguous: it starts {listed}; give more of the id",
        )


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery the router made for an event, to be stored with it.

    `state` is pending, held (trigger inactive) or failed (render error: `body` is None and
    `render_error` says why). `supersede` cancels older pending deliveries of the same trigger
    and order. `destination` may be given when known at routing time (it lets `claim_due`
    skip a destination before the delivery's first attempt). `batch_window` (a
    `postbackd.batching.window_key`) makes it a row of that window's shipment file: it is
    never claimed on its own, and `next_attempt_at` is the window's end.
    """

    id: str
    trigger: str
    plugin: str
    customer: str
    event_type: str
    order_id: str | None
    format: str
    content_type: str
    subject: str | None
    body: bytes | None
    render_error: str | None
    state: DeliveryState
    ordered: bool
    supersede: bool
    held_reason: str | None = None
    next_attempt_at: float | None = None
    destination: str | None = None
    batch_window: str | None = None


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    """A delivery as the dispatcher claims it: the payload fixed at routing time.

    `body is None` means the delivery was `failed` (render error) and an operator retried it:
    render it again, store the result with `Spool.set_rendered`, then attempt it.

    Two counts, because `queue retry` gives a finished delivery a fresh schedule but not a
    fresh history: `attempts` is the position in the current retry schedule (reset to 0 by a
    retry; the schedule is decided on it), `logged_attempts` the number of the last attempt
    in the request log (never reset; the next attempt is numbered from it).
    """

    id: str
    event_id: str
    trigger: str
    plugin: str
    customer: str
    event_type: str
    order_id: str | None
    format: str
    content_type: str
    subject: str | None
    body: bytes | None
    render_error: str | None
    state: DeliveryState
    attempts: int
    ordered: bool
    created_at: float
    next_attempt_at: float
    seq: int
    destination: str | None = None
    logged_attempts: int = 0


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One attempt (or a decision without one, `counted=False`) to record in one write.

    `new_state` is done, pending (retry at `next_attempt_at`), dead, cancelled or failed.
    `request`/`response` go to the request log as JSON (secrets already masked).
    """

    delivery_id: str
    number: int
    started_at: float
    duration: float
    outcome: str
    new_state: DeliveryState
    next_attempt_at: float | None
    status: int | None
    error: str | None
    request: Mapping[str, Any] | None
    response: Mapping[str, Any] | None
    destination: str | None
    counted: bool = True

    @classmethod
    def decided(
        cls, delivery_id: str, number: int, state: DeliveryState, reason: str, at: float
    ) -> AttemptResult:
        """A state decided without sending anything (its trigger gone or inactive, a file that
        cannot be made): logged with `reason`, not counted as an attempt."""
        return cls(
            delivery_id=delivery_id,
            number=number,
            started_at=at,
            duration=0.0,
            outcome="fail",
            new_state=state,
            next_attempt_at=None,
            status=None,
            error=reason,
            request=None,
            response=None,
            destination=None,
            counted=False,
        )


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """What `Spool.submit` committed: `duplicate` when the event id was already stored."""

    event_id: str
    duplicate: bool
    deliveries: int
    superseded: int = 0


TimerState = Literal["pending", "fired", "cancelled"]
TIMER_COLUMNS = (
    "id, rule, customer, order_id, emit, started_by, started_at, due_at, state, finished_at, note"
)
"""The columns of ``sla_timers`` both backends share, in `SlaTimer`'s order (and the copy's)."""


@dataclass(frozen=True, slots=True)
class TimerStart:
    """Start an ``[[sla]]`` rule's timer for an order, in the transaction that stores the
    event `event_id` — unless the order has one for the rule already (started, fired or
    cancelled: a rule watches an order once) or an `expect` event of it is stored already.

    `id` is the id the delay alert will have (derived from rule, customer and order), so a
    timer fired twice yields one event. It is due `within` seconds after the commit."""

    event_id: str
    id: str
    rule: str
    customer: str
    order_id: str
    emit: str
    expect: tuple[str, ...]
    within: float


@dataclass(frozen=True, slots=True)
class TimerCancel:
    """Cancel the pending timers of `rules` for an order, in the transaction that stores the
    event `event_id` (an event the rules expect)."""

    event_id: str
    event_type: str
    customer: str
    order_id: str
    rules: tuple[str, ...]


TimerChange = TimerStart | TimerCancel


def timer_changes_by_event(changes: Sequence[TimerChange]) -> dict[str, tuple[TimerChange, ...]]:
    """The changes of a batch grouped by the event that makes them, in order."""
    grouped: dict[str, list[TimerChange]] = {}
    for change in changes:
        grouped.setdefault(change.event_id, []).append(change)
    return {event_id: tuple(found) for event_id, found in grouped.items()}


@dataclass(frozen=True, slots=True)
class SlaTimer:
    """One rule's timer for one order, as stored; `note` says how it ended (or why not yet)."""

    id: str
    rule: str
    customer: str
    order_id: str
    emit: str
    started_by: str
    started_at: float
    due_at: float
    state: TimerState
    finished_at: float | None = None
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DeliverySummary:
    """One line of the request log / queue listing. `next_attempt_at` is None unless pending.

    `attempts` counts every attempt in the request log, across `queue retry`s.
    """

    id: str
    event_id: str
    order_id: str | None
    customer: str
    trigger: str
    event_type: str
    plugin: str
    state: DeliveryState
    attempts: int
    created_at: float
    next_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    destination: str | None
    held_reason: str | None = None
    updated_at: float | None = None
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        return data


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One row of the request log: the final request and the system's response (or error)."""

    number: int
    started_at: float
    duration: float
    outcome: str
    status: int | None
    error: str | None
    request: Mapping[str, Any] | None = field(compare=False)
    response: Mapping[str, Any] | None = field(compare=False)
    node: str | None = None  # the fleet node that made it (a shared spool); None in SQLite

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "node": self.node,
            "started_at": self.started_at,
            "duration": self.duration,
            "outcome": self.outcome,
            "status": self.status,
            "error": self.error,
            "request": None if self.request is None else dict(self.request),
            "response": None if self.response is None else dict(self.response),
        }


@dataclass(frozen=True, slots=True)
class DeliveryDetail:
    """The four stages of one delivery: event, template processing, requests, responses."""

    summary: DeliverySummary
    event: Mapping[str, Any] = field(compare=False)
    body: bytes | None
    subject: str | None
    format: str
    content_type: str
    render_error: str | None
    attempts: list[AttemptRecord] = field(compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the body as text (undecodable bytes replaced), as stored it is UTF-8."""
        return {
            "delivery": self.summary.to_dict(),
            "event": dict(self.event),
            "template": {
                "format": self.format,
                "content_type": self.content_type,
                "subject": self.subject,
                "body": None if self.body is None else self.body.decode("utf-8", "replace"),
                "render_error": self.render_error,
            },
            "attempts": [attempt.to_dict() for attempt in self.attempts],
        }


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """Counts for `queue stats` and the metrics: deliveries per state (every state present)."""

    by_state: Mapping[str, int] = field(compare=False)
    oldest_pending_age: float | None
    events: int
    unmatched_events: int
    timers_pending: int = 0  # [[sla]] timers still waiting: orders that may yet be late

    @property
    def deliveries(self) -> int:
        return sum(self.by_state.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "by_state": dict(self.by_state),
            "deliveries": self.deliveries,
            "oldest_pending_age": self.oldest_pending_age,
            "events": self.events,
            "unmatched_events": self.unmatched_events,
            "timers_pending": self.timers_pending,
        }


@dataclass(frozen=True, slots=True)
class TriggerSync:
    """What `sync_triggers` changed after a configuration (re)load."""

    held: int
    resumed: int
    cancelled: int


@dataclass(frozen=True, slots=True)
class NodeBeat:
    """A daemon node's heartbeat: who it is and what configuration it runs (DESIGN §10).

    A fleet's nodes read each other's to show skew (`GET /v1/config`, the UI) and to decide what
    no live node handles any more: a trigger's deliveries are cancelled only when no live node
    knows it. `triggers` are every trigger the node has configured, `active_triggers` those of
    them it delivers. `last_seen` is filled in by the spool when it reads the row back.
    """

    node: str
    generation: int
    fingerprint: str
    started_at: float
    triggers: tuple[str, ...]
    active_triggers: tuple[str, ...]
    last_seen: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "generation": self.generation,
            "fingerprint": self.fingerprint,
            "started_at": self.started_at,
            "last_seen": self.last_seen,
            "triggers": list(self.triggers),
        }


HEARTBEAT_EVERY = 5.0
"""How often a daemon node refreshes its heartbeat (and at every reload)."""
LIVE_FOR = 3 * HEARTBEAT_EVERY
"""A node is live while its last heartbeat is younger than this: a few missed beats (a busy
database, a paused VM) do not make it look gone."""


@dataclass(frozen=True, slots=True)
class ErasedCounts:
    """Rows `erase_order` deleted."""

    events: int
    deliveries: int
    attempts: int


def parse_state(name: str) -> DeliveryState:
    """A state named by a user (CLI, API, UI); ValueError lists the known ones."""
    try:
        return DeliveryState(name)
    except ValueError:
        known = ", ".join(state.value for state in DeliveryState)
        raise ValueError(f"unknown delivery state {name!r}; use one of: {known}") from None


@dataclass(frozen=True, slots=True)
class ListFilter:
    """The request log's filters (`list_deliveries`), all optional; they combine with AND.

    `since` (inclusive) and `until` (exclusive) bound `created_at`, in epoch seconds.
    """

    state: DeliveryState | None = None
    customer: str | None = None
    trigger: str | None = None
    order: str | None = None
    event_type: str | None = None
    since: float | None = None
    until: float | None = None
    destination: str | None = None


NO_FILTER = ListFilter()


@dataclass(frozen=True, slots=True)
class Selection:
    """Which deliveries an operator's verb acts on: every given selector must match.

    No selector at all selects every delivery (in the states a verb allows). `since`
    (inclusive) and `until` (exclusive) bound `created_at`, as in `ListFilter`.
    """

    ids: tuple[str, ...] | None = None
    states: tuple[DeliveryState, ...] = ()
    customer: str | None = None
    destination: str | None = None
    trigger: str | None = None
    order: str | None = None
    event_type: str | None = None
    since: float | None = None
    until: float | None = None

    @classmethod
    def of(
        cls,
        *,
        ids: Collection[str] | None = None,
        states: Collection[DeliveryState] = (),
        customer: str | None = None,
        destination: str | None = None,
        where: ListFilter = NO_FILTER,
    ) -> Selection:
        """`where` brings the request log's filters (its `state` is the verb's to judge, and
        is ignored here); `customer` and `destination`, when given, win over its own."""
        if isinstance(ids, str):
            raise TypeError(f"pass a list of delivery ids, not the string {ids!r}")
        return cls(
            ids=None if ids is None else tuple(ids),
            states=tuple(states),
            customer=where.customer if customer is None else customer,
            destination=where.destination if destination is None else destination,
            trigger=where.trigger,
            order=where.order,
            event_type=where.event_type,
            since=where.since,
            until=where.until,
        )


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the spool keeps it, for a backfill to route again: `body` is the event's
    JSON (`Event.to_json`), `seq` its place in arrival order (the cursor of the next page)."""

    seq: int
    id: str
    type: str
    received_at: float
    body: bytes


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """Deliveries that finished in one minute (`start` is its first second, epoch)."""

    start: float
    done: int
    failed: int


@dataclass(frozen=True, slots=True)
class Throughput:
    """Finished deliveries per minute over a window, oldest minute first."""

    minutes: tuple[MinuteCount, ...]

    @property
    def done(self) -> int:
        return sum(m.done for m in self.minutes)

    @property
    def failed(self) -> int:
        return sum(m.failed for m in self.minutes)

    @property
    def success_rate(self) -> float | None:
        """Share of finished deliveries that were done (None when none finished)."""
        total = self.done + self.failed
        return None if total == 0 else self.done / total


def choose_delivery_id(given: str, matches: Sequence[str]) -> str:
    """The one id of `matches` (what a backend found for `given`, up to ``ID_MATCHES_SHOWN + 1``
    of them); UnknownDeliveryId or AmbiguousDeliveryId otherwise."""
    if not matches:
        raise UnknownDeliveryId(given)
    if len(matches) > 1:
        raise AmbiguousDeliveryId(
            given, matches[:ID_MATCHES_SHOWN], len(matches) > ID_MATCHES_SHOWN
        )
    return matches[0]


# ---------------------------------------------------------------- shipment files (batches)

MAX_FILE_ROWS = 50_000
"""Rows in one shipment file at most: a window with more goes out in several files (part 2,
3, …), so no window, however busy, makes a file too large to hold in memory or in one row."""


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One delivery of a closed window: a row of its shipment file (the rendered body; None
    when an operator asked for it to be rendered again, `queue resend --rerender`)."""

    delivery_id: str
    event_id: str
    order_id: str | None
    body: bytes | None


@dataclass(frozen=True, slots=True)
class OpenWindow:
    """A window whose end has passed with deliveries not yet in a file, as
    `Spool.closed_windows` finds it: `files` is how many files the window already has (a
    delivery committed just after its window was closed goes into one more file)."""

    key: str
    trigger: str
    customer: str
    plugin: str
    format: str
    content_type: str
    files: int
    rows: tuple[BatchRow, ...]


@dataclass(frozen=True, slots=True)
class NewBatch:
    """A shipment file to store with the deliveries it carries (`Spool.seal_batch`).

    The file's name and bytes are fixed here, like a payload at routing time: a file sent
    again after a crash is the same file, so a receiver can drop the duplicate.
    """

    id: str
    window: str
    part: int
    trigger: str
    plugin: str
    customer: str
    file_name: str
    format: str
    content_type: str
    body: bytes
    delivery_ids: tuple[str, ...]
    next_attempt_at: float


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A shipment file as the batcher claims it to send (`Spool.claim_batches`)."""

    id: str
    window: str
    trigger: str
    plugin: str
    customer: str
    file_name: str
    format: str
    content_type: str
    body: bytes
    rows: int
    attempts: int
    created_at: float
    next_attempt_at: float


@dataclass(frozen=True, slots=True)
class BatchAttempt:
    """One attempt at sending a shipment file, recorded for the file and each of its
    deliveries in one write (`Spool.record_batch_attempt`).

    `new_state` is done, pending (retry at `next_attempt_at`), dead or cancelled (its trigger
    is gone: `counted=False`, no attempt logged). `request` names the file; each delivery's
    request log shows it.
    """

    batch_id: str
    started_at: float
    duration: float
    outcome: str
    new_state: DeliveryState
    next_attempt_at: float | None
    status: int | None
    error: str | None
    request: Mapping[str, Any] | None
    response: Mapping[str, Any] | None
    counted: bool = True
