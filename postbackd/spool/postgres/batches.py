"""Shipment files in the PostgreSQL spool: closed windows, sealed files, claims and outcomes.

The same operations as the SQLite spool's (`postbackd.spool.sqlite.batches`), for a fleet: a
file's id is its window and part, so two nodes closing one window at once store one file (the
second insert finds it and gives up); a file is claimed with ``SKIP LOCKED`` and a lease
(the database's clock), so a node that dies mid-upload leaves it to another after the lease.
"""

from __future__ import annotations

import time

import asyncpg

from postbackd.spool.codec import log_json
from postbackd.spool.model import (
    FINAL_STATES,
    MAX_FILE_ROWS,
    BatchAttempt,
    BatchRow,
    NewBatch,
    OpenWindow,
    StoredBatch,
)
from postbackd.spool.postgres.schema import DB_NOW

WINDOWS_PER_LOOK = 64


class SealConflict(Exception):
    """Some of a file's deliveries changed since they were read: nothing is stored."""


async def closed_windows(conn: asyncpg.Connection, now: float, limit: int) -> list[OpenWindow]:
    """Windows that ended by `now` and hold deliveries not yet in a file, oldest first."""
    keys = [
        row[0]
        for row in await conn.fetch(
            "SELECT batch_window FROM deliveries WHERE state = 'pending' "
            "AND batch_window IS NOT NULL AND batch_id IS NULL AND next_attempt_at <= $1 "
            "GROUP BY batch_window ORDER BY min(next_attempt_at) LIMIT $2",
            now,
            limit or WINDOWS_PER_LOOK,
        )
    ]
    if not keys:
        return []
    rows = {
        key: await conn.fetch(
            "SELECT batch_window, id, event_id, order_id, body, trigger_name, customer, plugin, "
            "format, content_type FROM deliveries WHERE batch_window = $1 "
            "AND state = 'pending' AND batch_id IS NULL ORDER BY seq LIMIT $2",
            key,
            MAX_FILE_ROWS,
        )
        for key in keys
    }
    files = {
        row[0]: row[1]
        for row in await conn.fetch(
            "SELECT window_key, count(*) FROM batches WHERE window_key = ANY($1::text[]) "
            "GROUP BY window_key",
            keys,
        )
    }
    return [_window(key, rows[key], files.get(key, 0)) for key in keys if rows[key]]


def _window(key: str, rows: list[asyncpg.Record], files: int) -> OpenWindow:
    first = rows[0]
    return OpenWindow(
        key=key,
        trigger=first[5],
        customer=first[6],
        plugin=first[7],
        format=first[8],
        content_type=first[9],
        files=files,
        rows=tuple(BatchRow(r[1], r[2], r[3], _body(r[4])) for r in rows),
    )


async def seal_batch(conn: asyncpg.Connection, batch: NewBatch) -> bool:
    """Store the file and bind its deliveries to it; False when the file exists already;
    SealConflict (the caller's transaction rolls back) when a delivery changed."""
    now = time.time()
    inserted = await conn.fetchval(
        "INSERT INTO batches (id, window_key, part, trigger_name, plugin, customer, file_name, "
        "format, content_type, body, rows, state, created_at, next_attempt_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $13, $12) "
        "ON CONFLICT (id) DO NOTHING RETURNING 1",
        batch.id,
        batch.window,
        batch.part,
        batch.trigger,
        batch.plugin,
        batch.customer,
        batch.file_name,
        batch.format,
        batch.content_type,
        batch.body,
        len(batch.delivery_ids),
        now,
        batch.next_attempt_at,
    )
    if inserted is None:
        return False
    bound = await conn.fetch(
        "UPDATE deliveries SET batch_id = $1, next_attempt_at = $2, updated_at = $3 "
        "WHERE id = ANY($4::text[]) AND batch_window = $5 AND batch_id IS NULL "
        "AND state = 'pending' RETURNING 1",
        batch.id,
        batch.next_attempt_at,
        now,
        list(batch.delivery_ids),
        batch.window,
    )
    if len(bound) != len(batch.delivery_ids):
        raise SealConflict(batch.id)
    return True


async def claim_batches(
    conn: asyncpg.Connection, now: float, limit: int, node: str, lease: float
) -> list[StoredBatch]:
    """Take up to `limit` due files for `node`; a file whose lease ran out is due again."""
    rows = await conn.fetch(
        "WITH due AS (SELECT seq FROM batches WHERE state = 'pending' "
        f"AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < {DB_NOW}) "
        "ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
        f"UPDATE batches b SET node = $3, lease_until = {DB_NOW} + $4, updated_at = $1 "
        "FROM due WHERE b.seq = due.seq RETURNING b.id, b.window_key, b.trigger_name, "
        "b.plugin, b.customer, b.file_name, b.format, b.content_type, b.body, b.rows, "
        "b.attempts, b.created_at, b.next_attempt_at",
        now,
        limit,
        node,
        lease,
    )
    return sorted((_stored(row) for row in rows), key=lambda b: b.next_attempt_at)


def _stored(row: asyncpg.Record) -> StoredBatch:
    return StoredBatch(
        id=row[0],
        window=row[1],
        trigger=row[2],
        plugin=row[3],
        customer=row[4],
        file_name=row[5],
        format=row[6],
        content_type=row[7],
        body=bytes(row[8]),
        rows=row[9],
        attempts=row[10],
        created_at=row[11],
        next_attempt_at=row[12],
    )


async def next_batch_due(conn: asyncpg.Connection) -> float | None:
    """When the batcher should look next: the earliest open window's end or due file."""
    due: float | None = await conn.fetchval(
        "SELECT least((SELECT min(next_attempt_at) FROM deliveries WHERE state = 'pending' "
        "AND batch_window IS NOT NULL AND batch_id IS NULL), "
        "(SELECT min(next_attempt_at) FROM batches WHERE state = 'pending'))"
    )
    return due


async def release_own_batches(conn: asyncpg.Connection, node: str) -> int:
    """A node starting again: the files it was sending when it stopped are due again now."""
    status = await conn.execute(
        "UPDATE batches SET node = NULL, lease_until = NULL WHERE node = $1 AND state = 'pending'",
        node,
    )
    return int(status.rpartition(" ")[2] or 0)


async def record_batch_attempt(conn: asyncpg.Connection, result: BatchAttempt, node: str) -> bool:
    """Move the file and its deliveries on and log the attempt for each delivery; False when
    the file is gone."""
    now = time.time()
    state = str(result.new_state)
    final = result.new_state in FINAL_STATES
    counted = int(result.counted)
    found = await conn.fetchval(
        "UPDATE batches SET state = $1, attempts = attempts + $2, "
        "next_attempt_at = coalesce($3, next_attempt_at), last_error = $4, updated_at = $5, "
        "finished_at = $6, node = NULL, lease_until = NULL WHERE id = $7 RETURNING 1",
        state,
        counted,
        result.next_attempt_at,
        result.error,
        now,
        now if final else None,
        result.batch_id,
    )
    if found is None:
        return False
    if result.counted:
        await conn.execute(
            "INSERT INTO attempts (delivery_id, number, started_at, duration, outcome, status, "
            "error, request, response, node) SELECT d.id, "
            "(SELECT coalesce(max(number), 0) + 1 FROM attempts a WHERE a.delivery_id = d.id), "
            "$1, $2, $3, $4, $5, $6, $7, $8 FROM deliveries d WHERE d.batch_id = $9 "
            "AND d.state = 'pending'",
            result.started_at,
            result.duration,
            result.outcome,
            result.status,
            result.error,
            log_json(result.request),
            log_json(result.response),
            node,
            result.batch_id,
        )
    await conn.execute(
        "UPDATE deliveries SET state = $1, attempts = attempts + $2, "
        "next_attempt_at = coalesce($3, next_attempt_at), "
        "last_status = CASE WHEN $2 = 1 THEN $4 ELSE last_status END, last_error = $5, "
        "updated_at = $6, finished_at = $7 WHERE batch_id = $8 AND state = 'pending'",
        state,
        counted,
        result.next_attempt_at,
        result.status,
        result.error,
        now,
        now if final else None,
        result.batch_id,
    )
    return True


def _body(value: bytes | memoryview | None) -> bytes | None:
    """A row's stored body; None after `queue resend --rerender` (rendered again when its
    window closes)."""
    return None if value is None else bytes(value)
