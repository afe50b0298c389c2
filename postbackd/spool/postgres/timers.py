"""``[[sla]]`` timers in the PostgreSQL spool: started and cancelled inside intake's
transaction, claimed when due by one node of the fleet, finished once their alert is stored.

As in the SQLite spool (`postbackd.spool.sqlite.timers`), with what a fleet needs: intake locks
each (customer, order) it starts or cancels a timer for, so an expected event committed by one
node and the starting event committed by another at the same moment still see each other; and
due timers are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease on the database's clock, so
one node fires each while the others pass over it — and a node that dies while firing leaves
a claim that runs out, after which another fires it (the alert's id is derived from rule and
order, so a second firing is a duplicate intake ignores).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import asyncpg

from postbackd.spool.model import (
    TIMER_COLUMNS,
    SlaTimer,
    TimerCancel,
    TimerChange,
    TimerStart,
    TimerState,
)
from postbackd.spool.postgres.schema import DB_NOW
from postbackd.spool.postgres.writes import row_count


async def lock_orders(conn: asyncpg.Connection, changes: Sequence[TimerChange]) -> None:
    """Serialise timer changes per (customer, order) across nodes; sorted, so no deadlock."""
    keys = sorted({f"sla\x1f{change.customer}\x1f{change.order_id}" for change in changes})
    for key in keys:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)


async def apply_timers(
    conn: asyncpg.Connection, changes: Sequence[TimerChange], now: float
) -> None:
    """Start and cancel timers for an event just stored (never for a duplicate)."""
    for change in changes:
        if isinstance(change, TimerStart):
            await conn.execute(
                "INSERT INTO sla_timers (id, rule, customer, order_id, emit, started_by, "
                "started_at, due_at, state) SELECT $1, $2, $3, $4, $5, $6, $7, $8, 'pending' "
                "WHERE NOT EXISTS (SELECT 1 FROM events WHERE order_id = $4 AND customer = $3 "
                "AND type = ANY($9::text[])) ON CONFLICT (id) DO NOTHING",
                change.id,
                change.rule,
                change.customer,
                change.order_id,
                change.emit,
                change.event_id,
                now,
                now + change.within,
                list(change.expect),
            )
        else:
            await cancel(conn, change, now)


async def cancel(conn: asyncpg.Connection, change: TimerCancel, now: float) -> None:
    await conn.execute(
        "UPDATE sla_timers SET state = 'cancelled', finished_at = $1, note = $2, node = NULL, "
        "claimed_until = NULL WHERE order_id = $3 AND customer = $4 AND state = 'pending' "
        "AND rule = ANY($5::text[])",
        now,
        f"cancelled by {change.event_type} event {change.event_id}",
        change.order_id,
        change.customer,
        list(change.rules),
    )


async def claim_due(
    conn: asyncpg.Connection, now: float, node: str, lease: float, limit: int
) -> list[SlaTimer]:
    """Due timers no live node holds, earliest first, claimed for `node` until the lease ends
    (on the database's clock). Rows another node is claiming right now are skipped."""
    rows = await conn.fetch(
        f"UPDATE sla_timers SET node = $2, claimed_until = {DB_NOW} + $3 WHERE id IN ("
        "SELECT id FROM sla_timers WHERE state = 'pending' AND due_at <= $1 "
        f"AND coalesce(claimed_until, 0) < {DB_NOW} ORDER BY due_at LIMIT $4 "
        f"FOR UPDATE SKIP LOCKED) RETURNING {TIMER_COLUMNS}",
        now,
        node,
        lease,
        limit,
    )
    return sorted((timer_from_row(row) for row in rows), key=lambda timer: timer.due_at)


async def finish(
    conn: asyncpg.Connection, timer_id: str, state: TimerState, note: str, now: float
) -> bool:
    status = await conn.execute(
        "UPDATE sla_timers SET state = $1, finished_at = $2, note = $3, claimed_until = NULL "
        "WHERE id = $4 AND state = 'pending'",
        state,
        now,
        note,
        timer_id,
    )
    return row_count(status) > 0


async def release_own(conn: asyncpg.Connection, node: str) -> int:
    """At a node's start: claims it held before it stopped are void (it is firing nothing)."""
    status = await conn.execute(
        "UPDATE sla_timers SET claimed_until = NULL, node = NULL WHERE node = $1 "
        "AND state = 'pending'",
        node,
    )
    return row_count(status)


async def next_due(conn: asyncpg.Connection) -> float | None:
    value = await conn.fetchval(
        "SELECT min(greatest(due_at, coalesce(claimed_until, 0))) FROM sla_timers "
        "WHERE state = 'pending'"
    )
    return None if value is None else float(value)


async def list_timers(
    conn: asyncpg.Connection, state: TimerState | None, limit: int
) -> list[SlaTimer]:
    if state == "pending":
        rows = await conn.fetch(
            f"SELECT {TIMER_COLUMNS} FROM sla_timers WHERE state = $1 ORDER BY due_at LIMIT $2",
            state,
            limit,
        )
    elif state is None:
        rows = await conn.fetch(
            f"SELECT {TIMER_COLUMNS} FROM sla_timers ORDER BY started_at DESC LIMIT $1", limit
        )
    else:
        rows = await conn.fetch(
            f"SELECT {TIMER_COLUMNS} FROM sla_timers WHERE state = $1 "
            "ORDER BY finished_at DESC LIMIT $2",
            state,
            limit,
        )
    return [timer_from_row(row) for row in rows]


async def prune(conn: asyncpg.Connection, older_than: float, batch: int) -> int:
    status = await conn.execute(
        "DELETE FROM sla_timers WHERE id IN (SELECT id FROM sla_timers WHERE finished_at < $1 "
        "ORDER BY finished_at LIMIT $2)",
        older_than,
        batch,
    )
    return row_count(status)


def timer_from_row(row: asyncpg.Record) -> SlaTimer:
    values = list(row.values())
    values[8] = cast(TimerState, values[8])
    return SlaTimer(*values)
