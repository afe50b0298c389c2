"""Browsing the request log: pages of deliveries newest first, and finished deliveries per minute.

The spool runs these on a read-only connection of their own (a thread opened on first use), so
a page of the UI, the API or `postbackd requests` never queues behind the dispatcher's reads.

A time range is turned into a range of `seq` before the query runs. One writer thread stamps
``created_at`` and assigns ``seq`` in the same transaction, so ``created_at`` grows with
``seq``; a binary search over the rowid finds the bounds in ~20 point reads, and the newest-first
scan (by rowid, or by an index ending in ``seq``) then never walks rows outside the range.
The ``created_at`` predicates stay in the query, so a clock that stepped back cannot make a
row appear outside its range — at worst it hides a row stamped out of order.
"""

from __future__ import annotations

import sqlite3

from postbackd.spool.codec import SUMMARY_COLUMNS, summary_from_row
from postbackd.spool.model import DeliverySummary, ListFilter, MinuteCount, Throughput
from postbackd.spool.sqlite.reads import where_of

INDEXES = {
    "trigger_name": "deliveries_trigger",
    "customer": "deliveries_customer",
    "state": "deliveries_state",
    "event_type": "deliveries_event_type",
}
"""The spool's index (`schema`) that serves each filter newest first: (column, seq)."""
ORDER_INDEX = "deliveries_order"
PROBES = (1_000, 10_000, 100_000)
MAX_SEQ = 2**63 - 1

FINISHED_OK = ("done",)
FINISHED_BAD = ("dead", "failed")


def list_page(
    conn: sqlite3.Connection, filters: ListFilter, limit: int, after_seq: int | None
) -> tuple[list[DeliverySummary], int | None]:
    """One page, newest first, and the seq to continue below (None at the end)."""
    terms, params = where_of(filters)
    low = None if filters.since is None else first_seq_at_or_after(conn, filters.since)
    high = None if filters.until is None else first_seq_at_or_after(conn, filters.until)
    if after_seq is not None:
        high = after_seq if high is None else min(high, after_seq)
    if low is not None:
        terms.append("seq >= ?")
        params.append(low)
    if high is not None:
        terms.append("seq < ?")
        params.append(high)
    where = " AND ".join(terms) or "1"
    index = choose_index(conn, filters, low, high)
    hint = "" if index is None else f" INDEXED BY {index}"
    rows = conn.execute(
        f"SELECT {SUMMARY_COLUMNS}, seq FROM deliveries{hint} WHERE {where} "
        "ORDER BY seq DESC LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    page = [summary_from_row(row[:-1]) for row in rows[:limit]]
    next_seq = rows[limit - 1][-1] if len(rows) > limit else None
    return page, next_seq


def choose_index(
    conn: sqlite3.Connection, filters: ListFilter, low: int | None, high: int | None
) -> str | None:
    """The spool index to walk for these filters (None: no filter, walk the rowid).

    Every filtered column has an index ending in ``seq`` (see `schema`), so any of them
    yields rows newest first; the best is the one that leaves the fewest rows to look at.
    SQLite has no statistics on a spool (no ANALYZE) and guesses, and a wrong guess walks a
    big customer's whole history to find its few held deliveries. So with several filters
    their rows in the seq range are counted — on the index alone, up to a cap — and the first
    below the cap wins; the cap grows tenfold while every candidate reaches it, so the winner
    is within a factor of ten of the smallest and the counting costs about its size.
    """
    present = _indexes(conn)
    if filters.order is not None:
        return ORDER_INDEX if ORDER_INDEX in present else None
    candidates = [
        (column, str(value))
        for column, value in (
            ("trigger_name", filters.trigger),
            ("customer", filters.customer),
            ("state", filters.state),
            ("event_type", filters.event_type),
        )
        if value is not None and INDEXES[column] in present
    ]
    if not candidates:
        return None
    if len(candidates) == 1:
        return INDEXES[candidates[0][0]]
    for cap in PROBES:
        for column, value in candidates:
            if _count(conn, column, value, low, high, cap) < cap:
                return INDEXES[column]
    return INDEXES[candidates[0][0]]


def _count(
    conn: sqlite3.Connection, column: str, value: str, low: int | None, high: int | None, cap: int
) -> int:
    """Rows with `column` = `value` in the seq range, counted on its index, up to `cap`."""
    count: int = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM deliveries INDEXED BY {INDEXES[column]} "
        f"WHERE {column} = ? AND seq >= ? AND seq < ? LIMIT {cap})",
        (value, low or 0, MAX_SEQ if high is None else high),
    ).fetchone()[0]
    return count


def _indexes(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {name for (name,) in rows}


def first_seq_at_or_after(conn: sqlite3.Connection, when: float) -> int:
    """The smallest seq whose created_at >= `when` (one past the last seq when there is none)."""
    first = conn.execute("SELECT min(seq) FROM deliveries").fetchone()[0]
    last = conn.execute("SELECT max(seq) FROM deliveries").fetchone()[0]
    if first is None:
        return 0
    low, high = int(first), int(last) + 1
    while low < high:
        middle = (low + high) // 2
        row = conn.execute(
            "SELECT seq, created_at FROM deliveries WHERE seq >= ? ORDER BY seq LIMIT 1",
            (middle,),
        ).fetchone()
        if row is None or row[1] >= when:
            high = middle
        else:
            low = int(row[0]) + 1
    return low


def finished_per_minute(conn: sqlite3.Connection, now: float, minutes: int) -> Throughput:
    """Deliveries that ended done, or dead/failed, per minute over the last `minutes`."""
    first = (int(now) // 60 - minutes + 1) * 60
    counts: dict[int, list[int]] = {first + 60 * i: [0, 0] for i in range(minutes)}
    rows = conn.execute(
        "SELECT CAST(finished_at / 60 AS INTEGER) * 60 AS minute, state, count(*) "
        "FROM deliveries WHERE finished_at >= ? AND finished_at IS NOT NULL "
        "GROUP BY minute, state",
        (first,),
    )
    for minute, state, count in rows:
        bucket = counts.get(int(minute))
        if bucket is None:
            continue
        if state in FINISHED_OK:
            bucket[0] += count
        elif state in FINISHED_BAD:
            bucket[1] += count
    return Throughput(
        tuple(MinuteCount(float(start), done, bad) for start, (done, bad) in counts.items())
    )
