"""Claiming due deliveries across a fleet: FOR UPDATE SKIP LOCKED, a lease, ordered waits.

Every node claims from the same table. ``SKIP LOCKED`` lets two nodes claim at once without
waiting on each other or taking the same row; a claimed row carries the claiming `node` and
`lease_until` (the database's clock). A node that dies keeps its leases until they run out;
the next claim on any node then puts those rows back to pending (their schedule unchanged, so
due at once) and they go out like any other.

An ordered delivery behind an unfinished earlier one of its (trigger, order) — pending, in
flight or held, on any node — is not claimed but rescheduled (see the SQLite spool's claim),
and woken when the earlier one ends (`writes.wake_successor`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

import asyncpg

from postbackd.spool.codec import STORED_COLUMNS, stored_from_row, with_logged_attempts
from postbackd.spool.model import DeliveryState, StoredDelivery
from postbackd.spool.postgres.schema import DB_NOW

# An ordered delivery behind an earlier one in flight (or due but not taken) looks again after
# BLOCKED_RECHECK, behind a held one after HELD_RECHECK; the earlier one ending wakes it sooner.
BLOCKED_RECHECK = 60.0
HELD_RECHECK = 300.0
EXPIRED_BATCH = 1000  # expired leases put back per claim


async def recover_expired(conn: asyncpg.Connection, now: float) -> list[str]:
    """Put deliveries whose lease ran out back to pending; returns the nodes that held them."""
    rows = await conn.fetch(
        "WITH expired AS (SELECT seq, node FROM deliveries WHERE state = 'inflight' "
        f"AND lease_until < {DB_NOW} ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED) "
        "UPDATE deliveries d SET state = 'pending', node = NULL, lease_until = NULL, "
        "updated_at = $1 FROM expired WHERE d.seq = expired.seq RETURNING expired.node",
        now,
        EXPIRED_BATCH,
    )
    return [row["node"] for row in rows]


async def claim_due(
    conn: asyncpg.Connection,
    now: float,
    limit: int,
    exclude_ids: Collection[str],
    exclude_destinations: Collection[str],
    node: str,
    lease: float,
    triggers: Collection[str] | None,
) -> list[StoredDelivery]:
    """Mark up to `limit` due deliveries inflight for `node`, oldest schedule first.

    `triggers` (None: any) are those the node delivers: a delivery of a trigger it does not
    know is left to the nodes that do (configuration skew never cancels work, DESIGN §10).
    """
    rows = await conn.fetch(
        f"SELECT {STORED_COLUMNS} FROM deliveries WHERE state = 'pending' "
        "AND batch_window IS NULL "
        "AND next_attempt_at <= $1 AND id <> ALL($2::text[]) "
        "AND (destination IS NULL OR destination <> ALL($3::text[])) "
        "AND ($5::text[] IS NULL OR trigger_name = ANY($5::text[])) "
        "ORDER BY next_attempt_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED",
        now,
        list(exclude_ids),
        list(exclude_destinations),
        limit,
        None if triggers is None else list(triggers),
    )
    taken: list[StoredDelivery] = []
    marked = 0
    for row in rows:
        delivery = stored_from_row(row)
        if delivery.ordered and delivery.order_id is not None:
            # what this claim took so far is marked first: an earlier delivery of this order
            # among it must block this one
            await _mark(conn, [d.seq for d in taken[marked:]], now, node, lease)
            marked = len(taken)
            if await _defer_if_blocked(conn, delivery, now):
                continue
        taken.append(delivery)
    await _mark(conn, [d.seq for d in taken[marked:]], now, node, lease)
    numbers: dict[str, int] = {}
    if taken:
        rows = await conn.fetch(
            "SELECT delivery_id, max(number) FROM attempts "
            "WHERE delivery_id = ANY($1::text[]) GROUP BY delivery_id",
            [d.id for d in taken],
        )
        numbers = {row[0]: row[1] for row in rows}
    claimed = [replace(d, state=DeliveryState.INFLIGHT) for d in taken]
    return with_logged_attempts(claimed, numbers)


async def _mark(
    conn: asyncpg.Connection, seqs: list[int], now: float, node: str, lease: float
) -> None:
    if not seqs:
        return
    await conn.execute(
        f"UPDATE deliveries SET state = 'inflight', node = $1, lease_until = {DB_NOW} + $2, "
        "updated_at = $3 WHERE seq = ANY($4::bigint[]) AND state = 'pending'",
        node,
        lease,
        now,
        seqs,
    )


async def next_due_at(
    conn: asyncpg.Connection,
    exclude_destinations: Collection[str],
    triggers: Collection[str] | None,
) -> float | None:
    """The earliest next_attempt_at of pending deliveries this node would claim: not bound for
    an excluded destination, of a trigger among `triggers` (None: any) — a node must not wake
    for work it leaves to others."""
    due: float | None = await conn.fetchval(
        "SELECT min(next_attempt_at) FROM deliveries WHERE state = 'pending' "
        "AND batch_window IS NULL "
        "AND (destination IS NULL OR destination <> ALL($1::text[])) "
        "AND ($2::text[] IS NULL OR trigger_name = ANY($2::text[]))",
        list(exclude_destinations),
        None if triggers is None else list(triggers),
    )
    return due


async def _defer_if_blocked(conn: asyncpg.Connection, delivery: StoredDelivery, now: float) -> bool:
    """Put `delivery` off while an earlier delivery of its order is open; True if it was.

    The earlier one is read ``FOR SHARE``: if another node is committing its outcome right now,
    this waits for that commit and sees it ended. Read without the lock, it looked in flight,
    and the other node's wake-up of its successor (in the same commit) came before this claim's
    deferral existed to be woken: the successor waited the whole `BLOCKED_RECHECK`. Holding the
    share lock the other way round makes that node's outcome wait for this claim's commit, and
    its wake-up then finds the deferral.
    """
    blocker = await conn.fetchrow(
        "SELECT state, next_attempt_at FROM deliveries WHERE order_id = $1 AND trigger_name = $2 "
        "AND seq < $3 AND state IN ('pending', 'inflight', 'held') ORDER BY seq LIMIT 1 "
        "FOR SHARE",
        delivery.order_id,
        delivery.trigger,
        delivery.seq,
    )
    if blocker is None:
        return False
    state, blocker_next = blocker["state"], blocker["next_attempt_at"]
    if state == DeliveryState.PENDING and blocker_next > now:
        until = blocker_next
    elif state == DeliveryState.HELD:
        until = now + HELD_RECHECK
    else:
        until = now + BLOCKED_RECHECK
    await conn.execute(
        "UPDATE deliveries SET next_attempt_at = $1, updated_at = $2 WHERE seq = $3",
        until,
        now,
        delivery.seq,
    )
    return True
