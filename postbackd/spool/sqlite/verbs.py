"""The operator's verbs as SQLite transactions (`postbackd.spool.verbs.VerbStore`).

Each verb is one function run on the writer thread, in one group-committed transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from postbackd.spool.model import ErasedCounts, NewDelivery, Selection, StoredEvent
from postbackd.spool.sqlite import timers, writes
from postbackd.spool.sqlite.rows import id_list, selection_sql
from postbackd.spool.sqlite.threads import Operation
from postbackd.spool.verbs import UNBIND_FINISHED_FILE

Write = Callable[[Operation], "asyncio.Future[Any]"]


class SqliteVerbStore:
    def __init__(self, write: Write, truncate_log: Callable[[], Awaitable[None]]) -> None:
        """`truncate_log`: checkpoint the write-ahead log into the database and empty it (an
        erase is not done while old page versions remain in ``-wal``)."""
        self._write = write
        self._truncate_log = truncate_log

    async def retry(self, selection: Selection) -> int:
        return int(await self._write(lambda conn: retry(conn, selection)))

    async def count(self, selection: Selection) -> int:
        return int(await self._write(lambda conn: count(conn, selection)))

    async def resend(self, selection: Selection, rerender: bool) -> int:
        return int(await self._write(lambda conn: resend(conn, selection, rerender)))

    async def stored_events(
        self, customer: str, since: float, until: float | None, after_seq: int, limit: int
    ) -> list[StoredEvent]:
        found: list[StoredEvent] = await self._write(
            lambda conn: stored_events(conn, customer, since, until, after_seq, limit)
        )
        return found

    async def missing_ids(self, ids: Sequence[str]) -> list[str]:
        missing: list[str] = await self._write(lambda conn: missing_ids(conn, ids))
        return missing

    async def add_deliveries(self, rows: Sequence[tuple[str, NewDelivery]]) -> int:
        return int(await self._write(lambda conn: add_deliveries(conn, rows)))

    async def hold(self, selection: Selection, reason: str) -> int:
        return int(await self._write(lambda conn: hold(conn, selection, reason)))

    async def release(self, selection: Selection) -> int:
        return int(await self._write(lambda conn: release(conn, selection)))

    async def purge(self, selection: Selection) -> int:
        return int(await self._write(lambda conn: purge(conn, selection)))

    async def prune(self, older_than: float, batch: int) -> int:
        return int(await self._write(lambda conn: prune(conn, older_than, batch)))

    async def erase_order(self, order_id: str) -> ErasedCounts:
        """Delete (secure_delete), commit, then checkpoint and truncate the log: when this
        returns, no spool file holds the order's data (SpoolError if the log stayed in use)."""
        erased: ErasedCounts = await self._write(lambda conn: erase_order(conn, order_id))
        await self._truncate_log()
        return erased


def retry(conn: sqlite3.Connection, selection: Selection) -> int:
    """Due now; a finished delivery (dead, failed, cancelled) also gets a fresh schedule.

    The fresh schedule is `attempts` reset to 0 (the retry schedule is decided on it); the
    attempts already made stay in the request log, and the next one is numbered after them.
    """
    where, params = selection_sql(selection)
    now = time.time()
    return conn.execute(
        "UPDATE deliveries SET attempts = CASE WHEN state IN ('dead', 'failed', 'cancelled') "
        "THEN 0 ELSE attempts END, state = 'pending', next_attempt_at = ?, held_reason = NULL, "
        f"finished_at = NULL, updated_at = ?, batch_id = {UNBIND_FINISHED_FILE} WHERE {where}",
        (now, now, *params),
    ).rowcount


def count(conn: sqlite3.Connection, selection: Selection) -> int:
    where, params = selection_sql(selection)
    found: int = conn.execute(f"SELECT count(*) FROM deliveries WHERE {where}", params).fetchone()[
        0
    ]
    return found


def resend(conn: sqlite3.Connection, selection: Selection, rerender: bool) -> int:
    """Done deliveries due again now, on a fresh schedule; the request log keeps the earlier
    attempts. `rerender`: the stored payload is dropped, so the attempt renders the event
    with the trigger's current template (as for a retried `failed` delivery)."""
    where, params = selection_sql(selection)
    payload = ", body = NULL, subject = NULL, render_error = NULL" if rerender else ""
    now = time.time()
    return conn.execute(
        "UPDATE deliveries SET attempts = 0, state = 'pending', next_attempt_at = ?, "
        f"held_reason = NULL, finished_at = NULL, updated_at = ?{payload}, "
        f"batch_id = {UNBIND_FINISHED_FILE} WHERE {where}",
        (now, now, *params),
    ).rowcount


def stored_events(
    conn: sqlite3.Connection,
    customer: str,
    since: float,
    until: float | None,
    after_seq: int,
    limit: int,
) -> list[StoredEvent]:
    """A page of the customer's events received in [since, until), in arrival order."""
    rows = conn.execute(
        "SELECT seq, id, type, received_at, body FROM events WHERE received_at >= ? "
        "AND received_at < ? AND customer = ? AND seq > ? ORDER BY seq LIMIT ?",
        (since, float("inf") if until is None else until, customer, after_seq, limit),
    ).fetchall()
    return [
        StoredEvent(int(seq), id_, type_, float(at), bytes(body))
        for seq, id_, type_, at, body in rows
    ]


def missing_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> list[str]:
    """Those of `ids` that no delivery has, in the order given."""
    present = {
        row[0]
        for row in conn.execute(
            "SELECT id FROM deliveries WHERE id IN (SELECT value FROM json_each(?))",
            (id_list(ids),),
        )
    }
    return [delivery_id for delivery_id in ids if delivery_id not in present]


def add_deliveries(conn: sqlite3.Connection, rows: Sequence[tuple[str, NewDelivery]]) -> int:
    """Deliveries for events already stored (a backfill); an id that exists is skipped, so
    adding the same rows twice adds nothing. Supersede as at intake. Returns those added."""
    now = time.time()
    added = 0
    for event_id, new in rows:
        if conn.execute("SELECT 1 FROM deliveries WHERE id = ?", (new.id,)).fetchone():
            continue
        writes.insert_delivery(conn, event_id, new, now)
        conn.execute("UPDATE events SET matched = 1 WHERE id = ? AND matched = 0", (event_id,))
        added += 1
    return added


def hold(conn: sqlite3.Connection, selection: Selection, reason: str) -> int:
    where, params = selection_sql(selection)
    return conn.execute(
        f"UPDATE deliveries SET state = 'held', held_reason = ?, updated_at = ? WHERE {where}",
        (reason, time.time(), *params),
    ).rowcount


def release(conn: sqlite3.Connection, selection: Selection) -> int:
    where, params = selection_sql(selection)
    now = time.time()
    return conn.execute(
        "UPDATE deliveries SET state = 'pending', held_reason = NULL, next_attempt_at = ?, "
        f"updated_at = ?, batch_id = {UNBIND_FINISHED_FILE} WHERE {where}",
        (now, now, *params),
    ).rowcount


def purge(conn: sqlite3.Connection, selection: Selection) -> int:
    """Delete deliveries and their attempts; their events stay until pruned (idempotency)."""
    where, params = selection_sql(selection)
    ids = [row[0] for row in conn.execute(f"SELECT id FROM deliveries WHERE {where}", params)]
    _delete_deliveries(conn, ids)
    return len(ids)


def _delete_deliveries(conn: sqlite3.Connection, ids: list[str]) -> int:
    attempts = 0
    for start in range(0, len(ids), 500):
        chunk = id_list(ids[start : start + 500])
        attempts += conn.execute(
            "DELETE FROM attempts WHERE delivery_id IN (SELECT value FROM json_each(?))", (chunk,)
        ).rowcount
        conn.execute(
            "DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?))", (chunk,)
        )
    return attempts


def prune(conn: sqlite3.Connection, older_than: float, batch: int) -> int:
    """One batch: finished deliveries (and attempts) older than `older_than`, then events
    received before it that have no delivery left, and ``[[sla]]`` timers that ended before it.
    Returns the rows deleted (deliveries, events, timers)."""
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM deliveries WHERE finished_at < ? "
            "AND +state IN ('done', 'dead', 'failed', 'cancelled') "  # + : walk finished_at
            "ORDER BY finished_at LIMIT ?",
            (older_than, batch),
        )
    ]
    _delete_deliveries(conn, ids)
    events = conn.execute(
        "DELETE FROM events WHERE seq IN (SELECT seq FROM events e WHERE received_at < ? "
        "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) "
        "ORDER BY received_at LIMIT ?)",
        (older_than, batch),
    ).rowcount
    return len(ids) + events + timers.prune(conn, older_than, batch)


def erase_order(conn: sqlite3.Connection, order_id: str) -> ErasedCounts:
    """Delete an order's events, deliveries and request log, overwriting the freed pages.

    secure_delete ON zeroes the deleted cells and the pages they free; the writer's FAST
    default (schema.open_writer) has already zeroed the old versions of cells that updates
    left behind. The copies in the write-ahead log go with `truncate_log`, after the commit.
    """
    previous = int(conn.execute("PRAGMA secure_delete").fetchone()[0])  # 2: FAST
    conn.execute("PRAGMA secure_delete = ON")
    try:
        ids = [
            row[0]
            for row in conn.execute("SELECT id FROM deliveries WHERE order_id = ?", (order_id,))
        ]
        attempts = _delete_deliveries(conn, ids)
        events = conn.execute("DELETE FROM events WHERE order_id = ?", (order_id,)).rowcount
        conn.execute("DELETE FROM sla_timers WHERE order_id = ?", (order_id,))
    finally:
        conn.execute(f"PRAGMA secure_delete = {previous}")
    return ErasedCounts(events=events, deliveries=len(ids), attempts=attempts)
