"""The spool's write operations: plain functions run on the writer thread, inside its batch.

Each function gets the writer's connection with a transaction (and a SAVEPOINT of its own)
already open; it must not BEGIN or COMMIT. Raising rolls back only this operation.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from postbackd import jsoncodec
from postbackd.spool.codec import log_json
from postbackd.spool.model import (
    FINAL_STATES,
    TRIGGER_INACTIVE,
    AttemptResult,
    DeliveryState,
    NewDelivery,
    SubmitOutcome,
    TimerChange,
    TriggerSync,
)
from postbackd.spool.sqlite import timers
from postbackd.spool.sqlite.claim import wake_successor
from postbackd.spool.sqlite.rows import id_list


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event ready to insert (serialised on the caller's side, before the batch)."""

    id: str
    type: str
    customer: str
    order_id: str | None
    time: str
    source: str
    body: bytes
    timers: tuple[TimerChange, ...] = ()  # [[sla]] timers this event starts or cancels


def submit_many(
    conn: sqlite3.Connection, batch: Sequence[tuple[EventRow, Sequence[NewDelivery]]]
) -> list[SubmitOutcome]:
    """`submit` for a batch of events (one HTTP request's, one file's lines), in order.

    Three statements for the whole batch rather than two per event: which ids are known,
    then the new events, then their deliveries, each row set passed as one JSON array. The
    count of statements is what matters, more than their CPU: the sqlite3 module lets go of
    the interpreter lock at every statement, and while the event loop is busy the writer
    waits up to a switch interval to get it back, so a hundred events written one by one
    kept claims and outcomes queued behind them for tens of milliseconds.

    A batch with a superseding delivery, or a body that is not UTF-8 text, goes event by
    event (`submit`): those are rare, and their semantics stay those of one event at a time.
    """
    firsts: dict[str, tuple[EventRow, Sequence[NewDelivery]]] = {}
    for event, news in batch:
        firsts.setdefault(event.id, (event, news))
        if any(new.supersede for new in news):
            return [submit(conn, event, news) for event, news in batch]
    (known_json,) = conn.execute(
        "SELECT json_group_array(id) FROM events WHERE id IN (SELECT value FROM json_each(?))",
        (id_list(list(firsts)),),
    ).fetchone()
    known = set(jsoncodec.loads(known_json))
    fresh = [pair for event_id, pair in firsts.items() if event_id not in known]
    try:
        event_rows, delivery_rows = _bulk_rows(fresh)
    except UnicodeDecodeError:
        return [submit(conn, event, news) for event, news in batch]
    now = time.time()
    if event_rows:
        conn.execute(
            "INSERT INTO events (id, type, customer, order_id, event_time, received_at, source, "
            "matched, body) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, "
            "value ->> 4, ?, value ->> 5, value ->> 6, CAST(value ->> 7 AS BLOB) "
            "FROM json_each(?) ORDER BY key",
            (now, _json_rows(event_rows)),
        )
    if delivery_rows:
        conn.execute(
            "INSERT INTO deliveries (id, event_id, trigger_name, plugin, customer, event_type, "
            "order_id, format, content_type, subject, body, render_error, state, held_reason, "
            "ordered, created_at, next_attempt_at, updated_at, finished_at, last_error, "
            "destination, batch_window) SELECT value ->> 0, value ->> 1, value ->> 2, "
            "value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, "
            "value ->> 9, CAST(value ->> 10 AS BLOB), value ->> 11, value ->> 12, "
            "value ->> 13, value ->> 14, ?1, coalesce(value ->> 15, ?1), ?1, "
            "CASE WHEN value ->> 16 THEN ?1 END, CASE WHEN value ->> 16 THEN value ->> 11 END, "
            "value ->> 17, value ->> 18 FROM json_each(?2) ORDER BY key",
            (now, _json_rows(delivery_rows)),
        )
    for event, _ in fresh:
        if event.timers:
            timers.apply_timers(conn, event.timers, now)
    stored: set[str] = set()
    outcomes = []
    for event, news in batch:
        if event.id in known or event.id in stored:
            outcomes.append(SubmitOutcome(event.id, duplicate=True, deliveries=0))
        else:
            stored.add(event.id)
            outcomes.append(SubmitOutcome(event.id, False, len(news)))
    return outcomes


def submit_requests(
    conn: sqlite3.Connection,
    requests: Sequence[Sequence[tuple[EventRow, Sequence[NewDelivery]]]],
) -> list[list[SubmitOutcome]]:
    """`submit_many` for the batches of several callers at once (see `joined`): one answer
    per caller. An event id sent by two of them is stored for the first, a duplicate for the
    second, as if they had come one after the other."""
    outcomes = submit_many(conn, [pair for request in requests for pair in request])
    answers = []
    start = 0
    for request in requests:
        answers.append(outcomes[start : start + len(request)])
        start += len(request)
    return answers


def _bulk_rows(
    fresh: Sequence[tuple[EventRow, Sequence[NewDelivery]]],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows of `submit_many` as JSON-ready tuples; bodies as text (UnicodeDecodeError if
    one is not UTF-8: the caller then writes event by event)."""
    events: list[tuple[Any, ...]] = []
    deliveries: list[tuple[Any, ...]] = []
    for event, news in fresh:
        events.append(
            (
                event.id,
                event.type,
                event.customer,
                event.order_id,
                event.time,
                event.source,
                int(bool(news)),
                event.body.decode(),
            )
        )
        for new in news:
            deliveries.append(
                (
                    new.id,
                    event.id,
                    new.trigger,
                    new.plugin,
                    new.customer,
                    new.event_type,
                    new.order_id,
                    new.format,
                    new.content_type,
                    new.subject,
                    None if new.body is None else new.body.decode(),
                    new.render_error,
                    str(new.state),
                    new.held_reason,
                    int(new.ordered),
                    new.next_attempt_at,
                    int(new.state is DeliveryState.FAILED),
                    new.destination,
                    new.batch_window,
                )
            )
    return events, deliveries


def submit(
    conn: sqlite3.Connection, event: EventRow, deliveries: Sequence[NewDelivery]
) -> SubmitOutcome:
    """Store an event and its deliveries; nothing at all if the event id is already stored."""
    now = time.time()
    inserted = conn.execute(
        "INSERT INTO events (id, type, customer, order_id, event_time, received_at, source, "
        "matched, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        (
            event.id,
            event.type,
            event.customer,
            event.order_id,
            event.time,
            now,
            event.source,
            int(bool(deliveries)),
            event.body,
        ),
    ).rowcount
    if not inserted:
        return SubmitOutcome(event.id, duplicate=True, deliveries=0)
    if event.timers:
        timers.apply_timers(conn, event.timers, now)
    superseded = sum(insert_delivery(conn, event.id, new, now) for new in deliveries)
    return SubmitOutcome(event.id, False, len(deliveries), superseded)


def recover_inflight(conn: sqlite3.Connection) -> int:
    """After a crash nothing is in flight: those deliveries are due again, now (and no
    ``[[sla]]`` timer is being fired: their claims go too)."""
    timers.release_claims(conn)
    now = time.time()
    return conn.execute(
        "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, updated_at = ? "
        "WHERE state = 'inflight'",
        (now, now),
    ).rowcount


def record_attempts(conn: sqlite3.Connection, results: Sequence[AttemptResult]) -> list[bool]:
    """Log attempts and move their deliveries on; for each, False if it is gone (purged).

    Three statements for the whole batch (see `outcomes`) — which deliveries are there, their
    state changes, their attempt rows — rather than two per attempt. Not for the CPU (the
    same 20 µs per outcome either way, in-process) but for the writer thread's waits: the
    sqlite3 module lets go of the interpreter lock at every statement, and while the event
    loop is busy the writer waits up to a switch interval to get it back; written one by one,
    250 outcomes took the writer 50–70 ms for 5 ms of its CPU, and claims queued behind them.
    A delivery is never twice in one batch (it stays inflight until its outcome is
    committed); should it be, each result is written apart, in order.
    """
    ids = [result.delivery_id for result in results]
    if len(set(ids)) != len(ids) or len(ids) == 1:
        return [record_attempt(conn, result) for result in results]
    now = time.time()
    rows = []
    for result in results:
        rows.append(
            (
                result.delivery_id,
                str(result.new_state),
                int(result.counted),
                result.next_attempt_at,
                result.status,
                result.error,
                result.destination,
                now if result.new_state in FINAL_STATES else None,
                result.number,
                result.started_at,
                result.duration,
                result.outcome,
                log_json(result.request),
                log_json(result.response),
            )
        )
    batch = _json_rows(rows)
    (present_json,) = conn.execute(
        "SELECT json_group_array(json_array(id, seq, ordered, order_id, trigger_name)) "
        "FROM deliveries WHERE id IN (SELECT value ->> 0 FROM json_each(?))",
        (batch,),
    ).fetchone()
    present = {row[0]: row for row in jsoncodec.loads(present_json)}
    if not present:
        return [False] * len(results)
    conn.execute(
        "UPDATE deliveries SET state = r.value ->> 1, attempts = attempts + (r.value ->> 2), "
        "next_attempt_at = coalesce(r.value ->> 3, next_attempt_at), "
        "last_status = CASE WHEN r.value ->> 2 THEN r.value ->> 4 ELSE last_status END, "
        "last_error = r.value ->> 5, destination = coalesce(r.value ->> 6, destination), "
        "updated_at = ?, finished_at = r.value ->> 7, held_reason = NULL "
        "FROM json_each(?) AS r WHERE deliveries.id = r.value ->> 0",
        (now, batch),
    )
    conn.execute(
        "INSERT INTO attempts (delivery_id, number, started_at, duration, outcome, status, "
        "error, request, response) SELECT value ->> 0, value ->> 8, value ->> 9, value ->> 10, "
        "value ->> 11, value ->> 4, value ->> 5, value ->> 12, value ->> 13 FROM json_each(?) "
        "WHERE value ->> 0 IN (SELECT value FROM json_each(?)) ORDER BY key",
        (batch, id_list(list(present))),
    )
    for row, result in zip(rows, results, strict=True):
        known = present.get(result.delivery_id)
        if known is not None and row[7] is not None:
            _, seq, ordered, order_id, trigger = known
            if ordered and order_id is not None:
                wake_successor(conn, order_id, trigger, seq, now)
    return [delivery_id in present for delivery_id in ids]


def _json_rows(rows: list[tuple[Any, ...]]) -> str | bytes:
    """Rows as one JSON array parameter (text a codec refuses, such as a lone surrogate, is
    escaped by the standard library instead)."""
    try:
        return jsoncodec.dumps(rows)
    except (TypeError, ValueError):
        return json.dumps(rows)


def record_attempt(conn: sqlite3.Connection, result: AttemptResult) -> bool:
    """Log an attempt and move its delivery on; False if the delivery is gone (purged)."""
    now = time.time()
    final = result.new_state in FINAL_STATES
    row = conn.execute(
        "UPDATE deliveries SET state = ?, attempts = attempts + ?, "
        "next_attempt_at = coalesce(?, next_attempt_at), "
        "last_status = CASE WHEN ? THEN ? ELSE last_status END, last_error = ?, "
        "destination = coalesce(?, destination), updated_at = ?, finished_at = ?, "
        "held_reason = NULL WHERE id = ? RETURNING seq, ordered, order_id, trigger_name",
        (
            str(result.new_state),
            int(result.counted),
            result.next_attempt_at,
            int(result.counted),
            result.status,
            result.error,
            result.destination,
            now,
            now if final else None,
            result.delivery_id,
        ),
    ).fetchone()
    if row is None:
        return False
    seq, ordered, order_id, trigger = row
    conn.execute(
        "INSERT INTO attempts (delivery_id, number, started_at, duration, outcome, status, "
        "error, request, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            result.delivery_id,
            result.number,
            result.started_at,
            result.duration,
            result.outcome,
            result.status,
            result.error,
            log_json(result.request),
            log_json(result.response),
        ),
    )
    if final and ordered and order_id is not None:
        wake_successor(conn, order_id, trigger, seq, now)
    return True


def release_inflight(conn: sqlite3.Connection, ids: str, next_attempt_at: float) -> int:
    return conn.execute(
        "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, updated_at = ? "
        "WHERE id IN (SELECT value FROM json_each(?)) AND state = 'inflight'",
        (next_attempt_at, time.time(), ids),
    ).rowcount


def hold_inflight(conn: sqlite3.Connection, delivery_id: str, reason: str) -> bool:
    return (
        conn.execute(
            "UPDATE deliveries SET state = 'held', held_reason = ?, updated_at = ? "
            "WHERE id = ? AND state = 'inflight'",
            (reason, time.time(), delivery_id),
        ).rowcount
        == 1
    )


def set_rendered(
    conn: sqlite3.Connection,
    delivery_id: str,
    body: bytes | None,
    subject: str | None,
    render_error: str | None,
    format: str | None,
    content_type: str | None,
) -> bool:
    return bool(
        conn.execute(
            "UPDATE deliveries SET body = ?, subject = ?, render_error = ?, "
            "format = coalesce(?, format), content_type = coalesce(?, content_type), "
            "updated_at = ? WHERE id = ?",
            (body, subject, render_error, format, content_type, time.time(), delivery_id),
        ).rowcount
    )


def sync_triggers(conn: sqlite3.Connection, active: list[str], inactive: list[str]) -> TriggerSync:
    """Hold the pending deliveries of inactive triggers, resume reactivated ones, cancel those
    of triggers that are gone.

    Runs at start-up and at every reload, possibly over a large backlog: each statement goes
    through the trigger index for the names concerned, never over every pending row.
    """
    now = time.time()
    held = 0
    for name in inactive:
        held += conn.execute(
            "UPDATE deliveries INDEXED BY deliveries_trigger SET state = 'held', "
            "held_reason = ?, updated_at = ? WHERE trigger_name = ? AND state = 'pending'",
            (TRIGGER_INACTIVE, now, name),
        ).rowcount
    resumed = conn.execute(
        "UPDATE deliveries SET state = 'pending', held_reason = NULL, updated_at = ? "
        "WHERE state = 'held' AND held_reason = ? "
        "AND trigger_name IN (SELECT value FROM json_each(?))",
        (now, TRIGGER_INACTIVE, id_list(active)),
    ).rowcount
    configured = {*active, *inactive}
    cancelled = 0
    for name in [name for name in _trigger_names(conn) if name not in configured]:
        cancelled += conn.execute(
            "UPDATE deliveries INDEXED BY deliveries_trigger SET state = 'cancelled', "
            "held_reason = NULL, finished_at = ?, updated_at = ?, last_error = 'trigger ' || "
            "trigger_name || ' was removed from the configuration' "
            "WHERE trigger_name = ? AND state IN ('pending', 'held')",
            (now, now, name),
        ).rowcount
    return TriggerSync(held=held, resumed=resumed, cancelled=cancelled)


def _trigger_names(conn: sqlite3.Connection) -> Iterator[str]:
    """Each trigger name the spool holds deliveries of, once, by skips along its index."""
    current = conn.execute(
        "SELECT min(trigger_name) FROM deliveries INDEXED BY deliveries_trigger"
    ).fetchone()[0]
    while current is not None:
        yield current
        current = conn.execute(
            "SELECT min(trigger_name) FROM deliveries INDEXED BY deliveries_trigger "
            "WHERE trigger_name > ?",
            (current,),
        ).fetchone()[0]


def insert_delivery(conn: sqlite3.Connection, event_id: str, new: NewDelivery, now: float) -> int:
    """Store one new delivery of `event_id` (its `supersede` first: the order's older pending
    statuses of the trigger cancelled); returns how many it superseded."""
    superseded = 0
    if new.supersede and new.order_id is not None and new.state is not DeliveryState.FAILED:
        superseded = conn.execute(
            "UPDATE deliveries SET state = 'cancelled', last_error = ?, finished_at = ?, "
            "updated_at = ? WHERE order_id = ? AND trigger_name = ? AND state = 'pending'",
            (f"superseded by {new.id}", now, now, new.order_id, new.trigger),
        ).rowcount
    failed = new.state is DeliveryState.FAILED
    conn.execute(
        "INSERT INTO deliveries (id, event_id, trigger_name, plugin, customer, event_type, "
        "order_id, format, content_type, subject, body, render_error, state, held_reason, "
        "ordered, created_at, next_attempt_at, updated_at, finished_at, last_error, "
        "destination, batch_window) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new.id,
            event_id,
            new.trigger,
            new.plugin,
            new.customer,
            new.event_type,
            new.order_id,
            new.format,
            new.content_type,
            new.subject,
            new.body,
            new.render_error,
            str(new.state),
            new.held_reason,
            int(new.ordered),
            now,
            now if new.next_attempt_at is None else new.next_attempt_at,
            now,
            now if failed else None,
            new.render_error if failed else None,
            new.destination,
            new.batch_window,
        ),
    )
    return superseded
