"""The spool's read queries, run on the reader thread inside one read transaction each."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from postbackd.spool.codec import (
    ATTEMPT_COLUMNS,
    SUMMARY_COLUMNS,
    attempt_from_row,
    summary_from_row,
)
from postbackd.spool.model import (
    DeliveryDetail,
    DeliveryState,
    ListFilter,
    SpoolStats,
)


def where_of(filters: ListFilter) -> tuple[list[str], list[Any]]:
    """The WHERE terms and parameters of the request log's filters."""
    columns = (
        ("state", None if filters.state is None else str(filters.state)),
        ("customer", filters.customer),
        ("trigger_name", filters.trigger),
        ("order_id", filters.order),
        ("event_type", filters.event_type),
        ("destination", filters.destination),
    )
    terms = [f"{column} = ?" for column, value in columns if value is not None]
    params: list[Any] = [value for _, value in columns if value is not None]
    if filters.since is not None:
        terms.append("created_at >= ?")
        params.append(filters.since)
    if filters.until is not None:
        terms.append("created_at < ?")
        params.append(filters.until)
    return terms, params


def ids_with_prefix(conn: sqlite3.Connection, given: str, min_prefix: int, limit: int) -> list[str]:
    """The delivery ids `given` may stand for, in id order, at most `limit`: ``[given]`` when
    it is a whole id, else the ids starting with it — when it has `min_prefix` characters or
    more (a range scan of the id's unique index, never the whole table)."""
    if conn.execute("SELECT 1 FROM deliveries WHERE id = ?", (given,)).fetchone() is not None:
        return [given]
    if len(given) < min_prefix or not given.isascii():
        return []
    upper = given[:-1] + chr(ord(given[-1]) + 1)  # the first text past every `given…`
    rows = conn.execute(
        "SELECT id FROM deliveries WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
        (given, upper, limit),
    ).fetchall()
    return [row[0] for row in rows]


def get_delivery(conn: sqlite3.Connection, delivery_id: str) -> DeliveryDetail | None:
    row = conn.execute(
        f"SELECT {SUMMARY_COLUMNS}, body, subject, format, content_type, render_error "
        "FROM deliveries WHERE id = ?",
        (delivery_id,),
    ).fetchone()
    if row is None:
        return None
    summary = summary_from_row(row[:-5])
    body, subject, format_, content_type, render_error = row[-5:]
    event_row = conn.execute("SELECT body FROM events WHERE id = ?", (summary.event_id,)).fetchone()
    event: dict[str, Any] = {} if event_row is None else json.loads(event_row[0])
    attempts = [
        attempt_from_row(attempt)
        for attempt in conn.execute(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = ? ORDER BY id",
            (delivery_id,),
        )
    ]
    return DeliveryDetail(
        summary=summary,
        event=event,
        body=body,
        subject=subject,
        format=format_,
        content_type=content_type,
        render_error=render_error,
        attempts=attempts,
    )


def stats(conn: sqlite3.Connection) -> SpoolStats:
    by_state = {str(state): 0 for state in DeliveryState}
    for state, count in conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state"):
        by_state[state] = count
    oldest = conn.execute(
        "SELECT created_at FROM deliveries WHERE state = 'pending' ORDER BY seq LIMIT 1"
    ).fetchone()
    events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    unmatched = conn.execute("SELECT count(*) FROM events WHERE matched = 0").fetchone()[0]
    timers = conn.execute("SELECT count(*) FROM sla_timers WHERE state = 'pending'").fetchone()[0]
    return SpoolStats(
        by_state=by_state,
        oldest_pending_age=None if oldest is None else max(0.0, time.time() - oldest[0]),
        events=events,
        unmatched_events=unmatched,
        timers_pending=timers,
    )


def previous_event(
    conn: sqlite3.Connection, customer: str, order_id: str, before_event_id: str
) -> dict[str, Any] | None:
    """The newest event of the order stored before `before_event_id` (or at all, when that
    event is not stored): found through the events_order index, newest first, one row."""
    row = conn.execute(
        "SELECT body FROM events WHERE order_id = ? AND customer = ? AND seq < coalesce("
        "(SELECT seq FROM events WHERE id = ?), 9223372036854775807) ORDER BY seq DESC LIMIT 1",
        (order_id, customer, before_event_id),
    ).fetchone()
    if row is None:
        return None
    envelope: dict[str, Any] = json.loads(row[0])
    return envelope
