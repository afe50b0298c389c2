"""The operator's verbs as PostgreSQL transactions (`postbackd.spool.verbs.VerbStore`).

Each verb is one transaction. Retry and release notify the fleet, so an idle node picks the
deliveries up at once, whichever node (or CLI) the operator used.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from postbackd.spool.model import ErasedCounts, NewDelivery, Selection, StoredEvent
from postbackd.spool.postgres import timers
from postbackd.spool.postgres.writes import (
    insert_delivery,
    lock_orders,
    notify_work,
    row_count,
)
from postbackd.spool.verbs import UNBIND_FINISHED_FILE

T = TypeVar("T")
Transact = Callable[[Callable[[asyncpg.Connection], Awaitable[T]]], Awaitable[T]]


def selection_sql(selection: Selection, params: list[Any]) -> str:
    """A WHERE clause (never empty) for a verb's selection; values are appended to `params`."""
    terms: list[str] = []
    if selection.ids is not None:
        params.append(list(selection.ids))
        terms.append(f"id = ANY(${len(params)}::text[])")
    if selection.states:
        params.append([str(state) for state in selection.states])
        terms.append(f"state = ANY(${len(params)}::text[])")
    if selection.customer is not None:
        params.append(selection.customer)
        terms.append(f"customer = ${len(params)}")
    for column, value in (
        ("destination", selection.destination),
        ("trigger_name", selection.trigger),
        ("order_id", selection.order),
        ("event_type", selection.event_type),
    ):
        if value is not None:
            params.append(value)
            terms.append(f"{column} = ${len(params)}")
    if selection.since is not None:
        params.append(selection.since)
        terms.append(f"created_at >= ${len(params)}")
    if selection.until is not None:
        params.append(selection.until)
        terms.append(f"created_at < ${len(params)}")
    return " AND ".join(terms) or "true"


class PostgresVerbStore:
    """Runs each verb through `transact` (the spool's: one pooled connection, one transaction,
    connection failures turned into `SpoolUnavailable`)."""

    def __init__(self, transact: Transact[Any]) -> None:
        self._transact = transact

    async def retry(self, selection: Selection) -> int:
        return int(await self._transact(lambda conn: retry(conn, selection)))

    async def count(self, selection: Selection) -> int:
        return int(await self._transact(lambda conn: count(conn, selection)))

    async def resend(self, selection: Selection, rerender: bool) -> int:
        return int(await self._transact(lambda conn: resend(conn, selection, rerender)))

    async def stored_events(
        self, customer: str, since: float, until: float | None, after_seq: int, limit: int
    ) -> list[StoredEvent]:
        found: list[StoredEvent] = await self._transact(
            lambda conn: stored_events(conn, customer, since, until, after_seq, limit)
        )
        return found

    async def missing_ids(self, ids: Sequence[str]) -> list[str]:
        missing: list[str] = await self._transact(lambda conn: missing_ids(conn, ids))
        return missing

    async def add_deliveries(self, rows: Sequence[tuple[str, NewDelivery]]) -> int:
        return int(await self._transact(lambda conn: add_deliveries(conn, rows)))

    async def hold(self, selection: Selection, reason: str) -> int:
        return int(await self._transact(lambda conn: hold(conn, selection, reason)))

    async def release(self, selection: Selection) -> int:
        return int(await self._transact(lambda conn: release(conn, selection)))

    async def purge(self, selection: Selection) -> int:
        return int(await self._transact(lambda conn: purge(conn, selection)))

    async def prune(self, older_than: float, batch: int) -> int:
        return int(await self._transact(lambda conn: prune(conn, older_than, batch)))

    async def erase_order(self, order_id: str) -> ErasedCounts:
        erased: ErasedCounts = await self._transact(lambda conn: erase_order(conn, order_id))
        return erased


async def retry(conn: asyncpg.Connection, selection: Selection) -> int:
    """Due now; a finished delivery (dead, failed, cancelled) also gets a fresh schedule."""
    params: list[Any] = [time.time()]
    where = selection_sql(selection, params)
    count = row_count(
        await conn.execute(
            "UPDATE deliveries SET attempts = CASE WHEN state IN ('dead', 'failed', "
            "'cancelled') THEN 0 ELSE attempts END, state = 'pending', next_attempt_at = $1, "
            f"held_reason = NULL, finished_at = NULL, updated_at = $1, "
            f"batch_id = {UNBIND_FINISHED_FILE} WHERE {where}",
            *params,
        )
    )
    if count:
        await notify_work(conn)
    return count


async def count(conn: asyncpg.Connection, selection: Selection) -> int:
    params: list[Any] = []
    where = selection_sql(selection, params)
    return int(await conn.fetchval(f"SELECT count(*) FROM deliveries WHERE {where}", *params))


async def resend(conn: asyncpg.Connection, selection: Selection, rerender: bool) -> int:
    """Done deliveries due again now, on a fresh schedule (see the SQLite twin)."""
    params: list[Any] = [time.time()]
    where = selection_sql(selection, params)
    payload = ", body = NULL, subject = NULL, render_error = NULL" if rerender else ""
    count = row_count(
        await conn.execute(
            "UPDATE deliveries SET attempts = 0, state = 'pending', next_attempt_at = $1, "
            f"held_reason = NULL, finished_at = NULL, updated_at = $1{payload}, "
            f"batch_id = {UNBIND_FINISHED_FILE} WHERE {where}",
            *params,
        )
    )
    if count:
        await notify_work(conn)
    return count


async def stored_events(
    conn: asyncpg.Connection,
    customer: str,
    since: float,
    until: float | None,
    after_seq: int,
    limit: int,
) -> list[StoredEvent]:
    """A page of the customer's events received in [since, until), in arrival order."""
    rows = await conn.fetch(
        "SELECT seq, id, type, received_at, body FROM events WHERE received_at >= $1 "
        "AND received_at < $2 AND customer = $3 AND seq > $4 ORDER BY seq LIMIT $5",
        since,
        float("inf") if until is None else until,
        customer,
        after_seq,
        limit,
    )
    return [
        StoredEvent(row["seq"], row["id"], row["type"], row["received_at"], bytes(row["body"]))
        for row in rows
    ]


async def missing_ids(conn: asyncpg.Connection, ids: Sequence[str]) -> list[str]:
    """Those of `ids` that no delivery has, in the order given."""
    rows = await conn.fetch("SELECT id FROM deliveries WHERE id = ANY($1::text[])", list(ids))
    present = {row["id"] for row in rows}
    return [delivery_id for delivery_id in ids if delivery_id not in present]


async def add_deliveries(conn: asyncpg.Connection, rows: Sequence[tuple[str, NewDelivery]]) -> int:
    """Deliveries for events already stored (a backfill); an id that exists is skipped.

    The (trigger, order) advisory locks are taken first, as at intake, so a backfilled
    delivery and one another node routes at the same moment keep their order.
    """
    await lock_orders(conn, (new for _, new in rows))
    now = time.time()
    added = 0
    for event_id, new in rows:
        if await conn.fetchval("SELECT 1 FROM deliveries WHERE id = $1", new.id):
            continue
        if not (await insert_delivery(conn, event_id, new, now, skip_stored=True)).stored:
            continue  # another node's backfill stored it meanwhile
        await conn.execute(
            "UPDATE events SET matched = true WHERE id = $1 AND NOT matched", event_id
        )
        added += 1
    if added:
        await notify_work(conn)
    return added


async def hold(conn: asyncpg.Connection, selection: Selection, reason: str) -> int:
    params: list[Any] = [reason, time.time()]
    where = selection_sql(selection, params)
    return row_count(
        await conn.execute(
            f"UPDATE deliveries SET state = 'held', held_reason = $1, updated_at = $2 "
            f"WHERE {where}",
            *params,
        )
    )


async def release(conn: asyncpg.Connection, selection: Selection) -> int:
    params: list[Any] = [time.time()]
    where = selection_sql(selection, params)
    count = row_count(
        await conn.execute(
            "UPDATE deliveries SET state = 'pending', held_reason = NULL, next_attempt_at = $1, "
            f"updated_at = $1, batch_id = {UNBIND_FINISHED_FILE} WHERE {where}",
            *params,
        )
    )
    if count:
        await notify_work(conn)
    return count


async def purge(conn: asyncpg.Connection, selection: Selection) -> int:
    """Delete deliveries and their attempts; their events stay until pruned (idempotency)."""
    params: list[Any] = []
    where = selection_sql(selection, params)
    ids = [
        row["id"] for row in await conn.fetch(f"SELECT id FROM deliveries WHERE {where}", *params)
    ]
    await _delete_deliveries(conn, ids)
    return len(ids)


async def _delete_deliveries(conn: asyncpg.Connection, ids: list[str]) -> int:
    attempts = row_count(
        await conn.execute("DELETE FROM attempts WHERE delivery_id = ANY($1::text[])", ids)
    )
    await conn.execute("DELETE FROM deliveries WHERE id = ANY($1::text[])", ids)
    return attempts


async def prune(conn: asyncpg.Connection, older_than: float, batch: int) -> int:
    """One batch: finished deliveries (and attempts) older than `older_than`, then events
    received before it that have no delivery left, and ``[[sla]]`` timers that ended before it.
    Returns the rows deleted (deliveries, events, timers)."""
    ids = [
        row["id"]
        for row in await conn.fetch(
            "SELECT id FROM deliveries WHERE finished_at < $1 "
            "AND state IN ('done', 'dead', 'failed', 'cancelled') "
            "ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            older_than,
            batch,
        )
    ]
    await _delete_deliveries(conn, ids)
    events = row_count(
        await conn.execute(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events e WHERE received_at < $1 "
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) "
            "ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            older_than,
            batch,
        )
    )
    return len(ids) + events + await timers.prune(conn, older_than, batch)


async def erase_order(conn: asyncpg.Connection, order_id: str) -> ErasedCounts:
    """Delete an order's events, deliveries and request log.

    PostgreSQL reuses the freed space at its next VACUUM (autovacuum); the rows are gone from
    every query at once, but their bytes may stay on disk until then.
    """
    ids = [
        row["id"]
        for row in await conn.fetch("SELECT id FROM deliveries WHERE order_id = $1", order_id)
    ]
    attempts = await _delete_deliveries(conn, ids)
    events = row_count(await conn.execute("DELETE FROM events WHERE order_id = $1", order_id))
    await conn.execute("DELETE FROM sla_timers WHERE order_id = $1", order_id)
    return ErasedCounts(events=events, deliveries=len(ids), attempts=attempts)
