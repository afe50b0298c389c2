"""The PostgreSQL spool's queries: stats, one delivery in full, the request log's pages and
finished deliveries per minute — the fleet's, whichever node made them.

Pages are newest first by `seq` with the same cursor as the SQLite spool (the `seq` of a
page's last row); every filter has an index ending in `seq` and the planner, which has
statistics here, picks among them.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import asyncpg

from postbackd.spool.codec import (
    ATTEMPT_COLUMNS,
    SUMMARY_COLUMNS,
    attempt_from_row,
    summary_from_row,
)
from postbackd.spool.model import (
    DeliveryDetail,
    DeliveryState,
    DeliverySummary,
    ListFilter,
    MinuteCount,
    SpoolStats,
    Throughput,
)

FINISHED_OK = ("done",)
FINISHED_BAD = ("dead", "failed")


async def stats(conn: asyncpg.Connection) -> SpoolStats:
    by_state = {str(state): 0 for state in DeliveryState}
    for row in await conn.fetch("SELECT state, count(*) AS n FROM deliveries GROUP BY state"):
        by_state[row["state"]] = row["n"]
    oldest = await conn.fetchval(
        "SELECT created_at FROM deliveries WHERE state = 'pending' ORDER BY seq LIMIT 1"
    )
    events = await conn.fetchval("SELECT count(*) FROM events")
    unmatched = await conn.fetchval("SELECT count(*) FROM events WHERE NOT matched")
    timers = await conn.fetchval("SELECT count(*) FROM sla_timers WHERE state = 'pending'")
    return SpoolStats(
        by_state=by_state,
        oldest_pending_age=None if oldest is None else max(0.0, time.time() - oldest),
        events=events,
        unmatched_events=unmatched,
        timers_pending=timers,
    )


async def ids_with_prefix(
    conn: asyncpg.Connection, given: str, min_prefix: int, limit: int
) -> list[str]:
    """As the SQLite backend's: ``[given]`` for a whole id, else the ids starting with it when
    it has `min_prefix` characters or more (a range scan of the primary key)."""
    if await conn.fetchval("SELECT 1 FROM deliveries WHERE id = $1", given) is not None:
        return [given]
    if len(given) < min_prefix or not given.isascii():
        return []
    upper = given[:-1] + chr(ord(given[-1]) + 1)  # the first text past every `given…`
    rows = await conn.fetch(
        "SELECT id FROM deliveries WHERE id >= $1 AND id < $2 ORDER BY id LIMIT $3",
        given,
        upper,
        limit,
    )
    return [row[0] for row in rows]


async def get_delivery(conn: asyncpg.Connection, delivery_id: str) -> DeliveryDetail | None:
    row = await conn.fetchrow(
        f"SELECT {SUMMARY_COLUMNS}, body, subject, format, content_type, render_error "
        "FROM deliveries WHERE id = $1",
        delivery_id,
    )
    if row is None:
        return None
    values = list(row.values())
    summary = summary_from_row(values[:-5])
    body, subject, format_, content_type, render_error = values[-5:]
    event_body = await conn.fetchval("SELECT body FROM events WHERE id = $1", summary.event_id)
    event: dict[str, Any] = {} if event_body is None else json.loads(event_body)
    attempts = [
        replace(attempt_from_row(list(attempt.values())[:-1]), node=attempt["node"])
        for attempt in await conn.fetch(
            f"SELECT {ATTEMPT_COLUMNS}, node FROM attempts WHERE delivery_id = $1 ORDER BY id",
            delivery_id,
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


def where_of(filters: ListFilter, params: list[Any]) -> list[str]:
    """The WHERE terms of the request log's filters; their values are appended to `params`."""
    columns = (
        ("state", None if filters.state is None else str(filters.state)),
        ("customer", filters.customer),
        ("trigger_name", filters.trigger),
        ("order_id", filters.order),
        ("event_type", filters.event_type),
        ("destination", filters.destination),
    )
    terms = []
    for column, value in columns:
        if value is not None:
            params.append(value)
            terms.append(f"{column} = ${len(params)}")
    if filters.since is not None:
        params.append(filters.since)
        terms.append(f"created_at >= ${len(params)}")
    if filters.until is not None:
        params.append(filters.until)
        terms.append(f"created_at < ${len(params)}")
    return terms


async def list_page(
    conn: asyncpg.Connection, filters: ListFilter, limit: int, after_seq: int | None
) -> tuple[list[DeliverySummary], int | None]:
    """One page, newest first, and the seq to continue below (None at the end)."""
    params: list[Any] = []
    terms = where_of(filters, params)
    if after_seq is not None:
        params.append(after_seq)
        terms.append(f"seq < ${len(params)}")
    where = " AND ".join(terms) or "true"
    params.append(limit + 1)
    rows = await conn.fetch(
        f"SELECT {SUMMARY_COLUMNS}, seq FROM deliveries WHERE {where} "
        f"ORDER BY seq DESC LIMIT ${len(params)}",
        *params,
    )
    page = [summary_from_row(list(row.values())[:-1]) for row in rows[:limit]]
    next_seq = rows[limit - 1]["seq"] if len(rows) > limit else None
    return page, next_seq


async def finished_per_minute(conn: asyncpg.Connection, now: float, minutes: int) -> Throughput:
    """Deliveries that ended done, or dead/failed, per minute over the last `minutes`."""
    first = (int(now) // 60 - minutes + 1) * 60
    counts: dict[int, list[int]] = {first + 60 * i: [0, 0] for i in range(minutes)}
    rows = await conn.fetch(
        "SELECT (floor(finished_at / 60) * 60)::bigint AS minute, state, count(*) AS n "
        "FROM deliveries WHERE finished_at >= $1 GROUP BY minute, state",
        float(first),
    )
    for row in rows:
        bucket = counts.get(int(row["minute"]))
        if bucket is None:
            continue
        if row["state"] in FINISHED_OK:
            bucket[0] += row["n"]
        elif row["state"] in FINISHED_BAD:
            bucket[1] += row["n"]
    return Throughput(
        tuple(MinuteCount(float(start), done, bad) for start, (done, bad) in counts.items())
    )


async def previous_event(
    conn: asyncpg.Connection, customer: str, order_id: str, before_event_id: str
) -> dict[str, Any] | None:
    """The newest event of the order stored before `before_event_id` (or at all, when that
    event is not stored): found through the events_order index, newest first, one row."""
    body = await conn.fetchval(
        "SELECT body FROM events WHERE order_id = $1 AND customer = $2 AND seq < coalesce("
        "(SELECT seq FROM events WHERE id = $3), 9223372036854775807) ORDER BY seq DESC LIMIT 1",
        order_id,
        customer,
        before_event_id,
    )
    if body is None:
        return None
    envelope: dict[str, Any] = json.loads(body)
    return envelope
