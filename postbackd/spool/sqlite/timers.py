"""``[[sla]]`` timers in the SQLite spool: started and cancelled inside intake's transaction,
claimed when due, finished once their alert is stored, listed for the operator.

The write functions run on the writer thread inside its batch (see `writes`); the reads on the
reader thread. One daemon owns a spool file, so a claim (``claimed_until``) only keeps the
firing loop from taking a timer twice while its alert is being stored; the owner clears
claims at open (`release_claims`), as it puts deliveries left in flight back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, cast

from postbackd import jsoncodec
from postbackd.spool.model import (
    TIMER_COLUMNS,
    SlaTimer,
    TimerCancel,
    TimerChange,
    TimerStart,
    TimerState,
)


def apply_timers(conn: sqlite3.Connection, changes: Sequence[TimerChange], now: float) -> None:
    """Start and cancel timers for an event just stored (never for a duplicate)."""
    for change in changes:
        if isinstance(change, TimerStart):
            conn.execute(
                "INSERT INTO sla_timers (id, rule, customer, order_id, emit, started_by, "
                "started_at, due_at, state) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending' "
                "WHERE NOT EXISTS (SELECT 1 FROM events WHERE order_id = ?4 AND customer = ?3 "
                "AND type IN (SELECT value FROM json_each(?9))) ON CONFLICT (id) DO NOTHING",
                (
                    change.id,
                    change.rule,
                    change.customer,
                    change.order_id,
                    change.emit,
                    change.event_id,
                    now,
                    now + change.within,
                    jsoncodec.dumps(list(change.expect)).decode(),
                ),
            )
        else:
            cancel(conn, change, now)


def cancel(conn: sqlite3.Connection, change: TimerCancel, now: float) -> int:
    return conn.execute(
        "UPDATE sla_timers SET state = 'cancelled', finished_at = ?, note = ?, "
        "claimed_until = NULL WHERE order_id = ? AND customer = ? AND state = 'pending' "
        "AND rule IN (SELECT value FROM json_each(?))",
        (
            now,
            f"cancelled by {change.event_type} event {change.event_id}",
            change.order_id,
            change.customer,
            jsoncodec.dumps(list(change.rules)).decode(),
        ),
    ).rowcount


def claim_due(conn: sqlite3.Connection, now: float, lease: float, limit: int) -> list[SlaTimer]:
    """Due, unclaimed timers, earliest first, claimed until ``now + lease``."""
    rows = conn.execute(
        f"UPDATE sla_timers SET claimed_until = ?1 + ?2 WHERE id IN (SELECT id FROM sla_timers "
        "WHERE state = 'pending' AND due_at <= ?1 AND coalesce(claimed_until, 0) < ?1 "
        f"ORDER BY due_at LIMIT ?3) RETURNING {TIMER_COLUMNS}",
        (now, lease, limit),
    ).fetchall()
    return sorted((timer_from_row(row) for row in rows), key=lambda timer: timer.due_at)


def finish(
    conn: sqlite3.Connection, timer_id: str, state: TimerState, note: str, now: float
) -> bool:
    """A pending timer ends (fired, or cancelled because its rule is gone); False if it was not
    pending any more."""
    return bool(
        conn.execute(
            "UPDATE sla_timers SET state = ?, finished_at = ?, note = ?, claimed_until = NULL "
            "WHERE id = ? AND state = 'pending'",
            (state, now, note, timer_id),
        ).rowcount
    )


def release_claims(conn: sqlite3.Connection) -> int:
    """At open, by the owner: no alert is being stored, so no timer is claimed."""
    return conn.execute(
        "UPDATE sla_timers SET claimed_until = NULL WHERE claimed_until IS NOT NULL"
    ).rowcount


def next_due(conn: sqlite3.Connection) -> float | None:
    """When the firing loop has something to do: the earliest due time of a pending timer,
    or the end of its claim when it is claimed."""
    row = conn.execute(
        "SELECT min(max(due_at, coalesce(claimed_until, 0))) FROM sla_timers "
        "WHERE state = 'pending'"
    ).fetchone()
    return None if row[0] is None else float(row[0])


def list_timers(conn: sqlite3.Connection, state: TimerState | None, limit: int) -> list[SlaTimer]:
    """Timers in `state` (every state: None), pending ones by due time, others newest first."""
    if state == "pending":
        query = f"SELECT {TIMER_COLUMNS} FROM sla_timers WHERE state = ? ORDER BY due_at LIMIT ?"
        params: tuple[Any, ...] = (state, limit)
    elif state is None:
        query = f"SELECT {TIMER_COLUMNS} FROM sla_timers ORDER BY started_at DESC LIMIT ?"
        params = (limit,)
    else:
        query = (
            f"SELECT {TIMER_COLUMNS} FROM sla_timers WHERE state = ? "
            "ORDER BY finished_at DESC LIMIT ?"
        )
        params = (state, limit)
    return [timer_from_row(row) for row in conn.execute(query, params)]


def prune(conn: sqlite3.Connection, older_than: float, batch: int) -> int:
    """One batch of retention: timers that ended before `older_than`."""
    return conn.execute(
        "DELETE FROM sla_timers WHERE id IN (SELECT id FROM sla_timers WHERE finished_at < ? "
        "ORDER BY finished_at LIMIT ?)",
        (older_than, batch),
    ).rowcount


def timer_from_row(row: Sequence[Any]) -> SlaTimer:
    values = list(row)
    values[8] = cast(TimerState, values[8])
    return SlaTimer(*values)
