"""Shipment files in the SQLite spool: closed windows, sealed files, their claims and outcomes.

Plain functions run on the writer thread (or the reader, for `closed_windows`), like `writes`.
A file is sealed in one transaction with its deliveries (`batch_id` set on each), so after a
crash a delivery is either in a file that will be sent — with the name and bytes stored — or
still waiting in its window; it stays ``pending`` until the file is sent.
"""

from __future__ import annotations

import sqlite3
import time

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
from postbackd.spool.sqlite.rows import id_list

WINDOWS_PER_LOOK = 64


class SealConflict(Exception):
    """Some of a file's deliveries changed since they were read (purged, cancelled, sealed
    by another call): the file is not stored, and its window is looked at again."""


def closed_windows(conn: sqlite3.Connection, now: float, limit: int) -> list[OpenWindow]:
    """Windows that ended by `now` and hold deliveries not yet in a file, oldest first."""
    keys = [
        key
        for (key,) in conn.execute(
            "SELECT DISTINCT batch_window FROM deliveries INDEXED BY deliveries_open_windows "
            "WHERE state = 'pending' AND batch_window IS NOT NULL AND batch_id IS NULL "
            "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (now, limit or WINDOWS_PER_LOOK),
        )
    ]
    if not keys:
        return []
    rows = {
        key: conn.execute(
            "SELECT batch_window, id, event_id, order_id, body, trigger_name, customer, plugin, "
            "format, content_type FROM deliveries INDEXED BY deliveries_window_rows "
            "WHERE batch_window = ? AND state = 'pending' AND batch_window IS NOT NULL "
            "AND batch_id IS NULL ORDER BY seq LIMIT ?",
            (key, MAX_FILE_ROWS),
        ).fetchall()
        for key in keys
    }
    files = dict(
        conn.execute(
            "SELECT window_key, count(*) FROM batches WHERE window_key IN "
            "(SELECT value FROM json_each(?)) GROUP BY window_key",
            (id_list(keys),),
        ).fetchall()
    )
    return [_window(key, rows[key], files.get(key, 0)) for key in keys if rows[key]]


def _window(key: str, rows: list[tuple], files: int) -> OpenWindow:
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


def seal_batch(conn: sqlite3.Connection, batch: NewBatch) -> bool:
    """Store the file and bind its deliveries to it; False (nothing stored) on a conflict."""
    now = time.time()
    inserted = conn.execute(
        "INSERT INTO batches (id, window_key, part, trigger_name, plugin, customer, file_name, "
        "format, content_type, body, rows, state, created_at, next_attempt_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) "
        "ON CONFLICT (id) DO NOTHING",
        (
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
            now,
        ),
    ).rowcount
    if not inserted:
        return False
    bound = conn.execute(
        "UPDATE deliveries SET batch_id = ?, next_attempt_at = ?, updated_at = ? "
        "WHERE id IN (SELECT value FROM json_each(?)) AND batch_window = ? "
        "AND batch_id IS NULL AND state = 'pending'",
        (batch.id, batch.next_attempt_at, now, id_list(batch.delivery_ids), batch.window),
    ).rowcount
    if bound != len(batch.delivery_ids):
        raise SealConflict(batch.id)
    return True


def claim_batches(
    conn: sqlite3.Connection, now: float, limit: int, node: str, lease: float
) -> list[StoredBatch]:
    """Take up to `limit` due files for `node` until `now + lease`."""
    rows = conn.execute(
        "UPDATE batches SET node = ?, lease_until = ?, updated_at = ? WHERE seq IN ("
        "SELECT seq FROM batches INDEXED BY batches_due WHERE state = 'pending' "
        "AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?) "
        "ORDER BY next_attempt_at LIMIT ?) RETURNING id, window_key, trigger_name, plugin, "
        "customer, file_name, format, content_type, body, rows, attempts, created_at, "
        "next_attempt_at",
        (node, now + lease, now, now, now, limit),
    ).fetchall()
    return sorted((_stored(row) for row in rows), key=lambda b: b.next_attempt_at)


def _stored(row: tuple) -> StoredBatch:
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


def next_batch_due(conn: sqlite3.Connection) -> float | None:
    """When the batcher should look next: the earliest open window's end or due file."""
    (window,) = conn.execute(
        "SELECT min(next_attempt_at) FROM deliveries INDEXED BY deliveries_open_windows "
        "WHERE state = 'pending' AND batch_window IS NOT NULL AND batch_id IS NULL"
    ).fetchone()
    (batch,) = conn.execute(
        "SELECT min(next_attempt_at) FROM batches WHERE state = 'pending'"
    ).fetchone()
    times = [t for t in (window, batch) if t is not None]
    return min(times) if times else None


def release_batch_leases(conn: sqlite3.Connection) -> int:
    """After a crash no file is being sent: the owner's claims end now."""
    return conn.execute(
        "UPDATE batches SET node = NULL, lease_until = NULL WHERE lease_until IS NOT NULL"
    ).rowcount


def record_batch_attempt(conn: sqlite3.Connection, result: BatchAttempt) -> bool:
    """Move the file and its deliveries on, and log the attempt for each delivery; False when
    the file is gone (purged)."""
    now = time.time()
    state = str(result.new_state)
    final = result.new_state in FINAL_STATES
    counted = int(result.counted)
    found = conn.execute(
        "UPDATE batches SET state = ?, attempts = attempts + ?, "
        "next_attempt_at = coalesce(?, next_attempt_at), last_error = ?, updated_at = ?, "
        "finished_at = ?, node = NULL, lease_until = NULL WHERE id = ?",
        (
            state,
            counted,
            result.next_attempt_at,
            result.error,
            now,
            now if final else None,
            result.batch_id,
        ),
    ).rowcount
    if not found:
        return False
    if result.counted:
        conn.execute(
            "INSERT INTO attempts (delivery_id, number, started_at, duration, outcome, status, "
            "error, request, response) SELECT d.id, "
            "(SELECT coalesce(max(number), 0) + 1 FROM attempts a WHERE a.delivery_id = d.id), "
            "?, ?, ?, ?, ?, ?, ? FROM deliveries d WHERE d.batch_id = ? "
            "AND d.state = 'pending'",
            (
                result.started_at,
                result.duration,
                result.outcome,
                result.status,
                result.error,
                log_json(result.request),
                log_json(result.response),
                result.batch_id,
            ),
        )
    conn.execute(
        "UPDATE deliveries SET state = ?, attempts = attempts + ?, "
        "next_attempt_at = coalesce(?, next_attempt_at), "
        "last_status = CASE WHEN ? THEN ? ELSE last_status END, last_error = ?, "
        "updated_at = ?, finished_at = ? WHERE batch_id = ? AND state = 'pending'",
        (
            state,
            counted,
            result.next_attempt_at,
            counted,
            result.status,
            result.error,
            now,
            now if final else None,
            result.batch_id,
        ),
    )
    return True


def _body(value: bytes | memoryview | None) -> bytes | None:
    """A row's stored body; None after `queue resend --rerender` (rendered again when its
    window closes)."""
    return None if value is None else bytes(value)
