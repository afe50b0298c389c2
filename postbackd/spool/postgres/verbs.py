"""The operator's verbs as PostgreSQL transactions (`postbackd.spool.verbs.VerbStore`).

Each verb is one transaction. Retry and release notify the fleet, so an idle node picks the
deliveries up at once, whichever node (or CLI) the operator used.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from postbackd.spool.model import ErasedCounts, Selection
from postbackd.spool.postgres import timers
from postbackd.spool.postgres.writes import notify_work, row_count

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
    if selection.destination is not None:
        params.append(selection.destination)
        terms.append(f"destination = ${len(params)}")
    return " AND ".join(terms) or "true"


class PostgresVerbStore:
    """Runs each verb through `transact` (the spool's: one pooled connection, one transaction,
    connection failures turned into `SpoolUnavailable`)."""

    def __init__(self, transact: Transact[Any]) -> None:
        self._transact = transact

    async def retry(self, selection: Selection) -> int:
        return int(await self._transact(lambda conn: retry(conn, selection)))

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
            f"held_reason = NULL, finished_at = NULL, updated_at = $1 WHERE {where}",
            *params,
        )
    )
    if count:
        await notify_work(conn)
    return count


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
            f"updated_at = $1 WHERE {where}",
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
