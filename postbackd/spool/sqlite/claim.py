"""Finding due deliveries without walking the backlog: claim_due and next_due_at.

The due index holds pending rows only, ordered by next_attempt_at. With no destination
excluded, the oldest due rows are simply the head of that index. When the dispatcher excludes
destinations (breaker open, its queue full), their due rows may fill the head of the index by
the hundred thousand; walking past them at every claim would cost the writer thread dearly. So
the head is looked at only through a bounded window, and beyond it the due rows are merged
from one index range per allowed destination — O(destinations), whatever the backlog.

Each statement hands its rows back in one value (`json_group_array`), not row by row: the
sqlite3 module lets go of the interpreter lock at every step of a statement, and while the
event loop is busy the writer thread waits up to a switch interval (5 ms) to get it back —
a claim of 256 rows fetched row by row took 13–19 ms on the writer for 4 ms of its CPU.

An ordered delivery behind an unfinished earlier one of its (trigger, order) is not claimed
but rescheduled to when that one may go (and woken when it ends), so it leaves the due range
instead of being examined again and again.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import replace

from postbackd import jsoncodec
from postbackd.spool.codec import STORED_COLUMNS, stored_from_row, with_logged_attempts
from postbackd.spool.model import DeliveryState, StoredDelivery
from postbackd.spool.sqlite.rows import STORED_JSON, id_list, stored_from_json

WINDOW = 2048  # due index entries looked at before merging per destination
CHUNK = 64
CLAIM_CHUNK = 512  # candidates marked inflight by one statement
SEQ_COLUMN = 17  # position of seq in a row of STORED_JSON
HEAD_SCANS = 8  # batches read from the head per claim, at most
# An ordered delivery behind an earlier one in flight (or due but not taken) looks again after
# BLOCKED_RECHECK, behind a held one after HELD_RECHECK; the earlier one ending wakes it sooner.
BLOCKED_RECHECK = 60.0
HELD_RECHECK = 300.0

Candidate = tuple[float, int]  # (next_attempt_at, seq)


def claim_due(
    conn: sqlite3.Connection,
    now: float,
    limit: int,
    exclude_ids: frozenset[str],
    exclude_destinations: frozenset[str],
) -> list[StoredDelivery]:
    """Mark up to `limit` due deliveries inflight, oldest schedule first, and return them."""
    claimer = _Claimer(conn, now, limit, exclude_ids)
    if not exclude_destinations:
        batch = max(limit, 32)
        for _ in range(HEAD_SCANS):  # claimed and rescheduled rows leave the due range
            head = _head(conn, now, batch, claimer.skipped)
            claimer.take(head)
            if claimer.full or len(head) < batch:
                break
    else:
        claimer.take(_window(conn, now, exclude_destinations))
        if not claimer.full and _beyond_window(conn, now):
            groups = [d for d in pending_destinations(conn) if d not in exclude_destinations]
            claimer.take(heapq.merge(*(_due_of(conn, group, now) for group in groups)))
    return with_logged_attempts(claimer.claimed, _logged_numbers(conn, claimer.claimed))


def _logged_numbers(conn: sqlite3.Connection, claimed: list[StoredDelivery]) -> dict[str, int]:
    """id → the number of its last logged attempt, for the claimed deliveries that have one."""
    if not claimed:
        return {}
    rows = conn.execute(
        "SELECT delivery_id, max(number) FROM attempts "
        "WHERE delivery_id IN (SELECT value FROM json_each(?)) GROUP BY delivery_id",
        (json.dumps([d.id for d in claimed]),),
    ).fetchall()
    return {delivery_id: number for delivery_id, number in rows}


def next_due_at(conn: sqlite3.Connection, exclude_destinations: frozenset[str]) -> float | None:
    """The earliest next_attempt_at of pending deliveries not bound for an excluded destination."""
    head = conn.execute(
        "SELECT next_attempt_at, destination FROM deliveries INDEXED BY deliveries_due "
        "WHERE state = 'pending' AND batch_window IS NULL ORDER BY next_attempt_at LIMIT 1"
    ).fetchone()
    if head is None or head[1] not in exclude_destinations:
        return None if head is None else float(head[0])
    earliest = [
        row[0]
        for group in pending_destinations(conn)
        if group not in exclude_destinations
        for row in conn.execute(
            "SELECT min(next_attempt_at) FROM deliveries INDEXED BY deliveries_destination "
            "WHERE state = 'pending' AND batch_window IS NULL AND destination IS ?",
            (group,),
        )
        if row[0] is not None
    ]
    return min(earliest) if earliest else None


def pending_destinations(conn: sqlite3.Connection) -> Iterator[str | None]:
    """Each destination of pending deliveries once (None: not known yet), by index skips."""
    if conn.execute(
        "SELECT 1 FROM deliveries INDEXED BY deliveries_destination "
        "WHERE state = 'pending' AND batch_window IS NULL AND destination IS NULL LIMIT 1"
    ).fetchone():
        yield None
    current = conn.execute(
        "SELECT min(destination) FROM deliveries INDEXED BY deliveries_destination "
        "WHERE state = 'pending' AND batch_window IS NULL"
    ).fetchone()[0]
    while current is not None:
        yield current
        current = conn.execute(
            "SELECT min(destination) FROM deliveries INDEXED BY deliveries_destination "
            "WHERE state = 'pending' AND batch_window IS NULL AND destination > ?",
            (current,),
        ).fetchone()[0]


def wake_successor(
    conn: sqlite3.Connection, order_id: str, trigger: str, seq: int, now: float
) -> None:
    """An ordered delivery ended: the next one of its order need not wait for its recheck."""
    conn.execute(
        "UPDATE deliveries SET next_attempt_at = ?, updated_at = ? WHERE seq = ("
        "SELECT seq FROM deliveries WHERE order_id = ? AND trigger_name = ? AND seq > ? "
        "AND state = 'pending' ORDER BY seq LIMIT 1) AND next_attempt_at > ?",
        (now, now, order_id, trigger, seq, now),
    )


class _Claimer:
    """Claims candidates in the order given until `limit`, within a budget of rows examined.

    Candidates are claimed by the chunk: one ``UPDATE … RETURNING`` marks the unordered ones
    inflight and returns them, so a claim costs one statement per chunk rather than two per
    row. Ordered deliveries (and excluded ids) are looked at one by one, in candidate order.
    """

    def __init__(
        self, conn: sqlite3.Connection, now: float, limit: int, exclude_ids: frozenset[str]
    ) -> None:
        self.conn = conn
        self.now = now
        self.limit = limit
        self.exclude_ids = exclude_ids
        self._excluded = id_list(sorted(exclude_ids))
        self.claimed: list[StoredDelivery] = []
        self.skipped: set[int] = set()  # excluded by id: still due, not to be examined again
        self.budget = max(limit * 4, 256)  # rows examined per claim: bounds the writer's time

    @property
    def full(self) -> bool:
        return len(self.claimed) >= self.limit or self.budget <= 0

    def take(self, candidates: Iterable[Candidate]) -> None:
        remaining = iter(candidates)
        while not self.full:
            chunk: list[int] = []
            wanted = min(self.limit - len(self.claimed), CLAIM_CHUNK)
            for _, seq in remaining:
                if seq in self.skipped:
                    continue
                self.budget -= 1
                chunk.append(seq)
                if len(chunk) >= wanted or self.budget <= 0:
                    break
            if not chunk:
                return
            self._claim(chunk)

    def _claim(self, seqs: list[int]) -> None:
        """Mark the unordered, not excluded ones of `seqs` inflight, then read them back.

        `seqs` were pending when read, in this transaction: those inflight now are the ones
        just claimed."""
        chunk = json.dumps(seqs)
        self.conn.execute(
            "UPDATE deliveries SET state = 'inflight', updated_at = ? "
            "WHERE seq IN (SELECT value FROM json_each(?)) AND state = 'pending' "
            "AND ordered = 0 AND id NOT IN (SELECT value FROM json_each(?))",
            (self.now, chunk, self._excluded),
        )
        (rows,) = self.conn.execute(
            f"SELECT {STORED_JSON} FROM deliveries "
            "WHERE seq IN (SELECT value FROM json_each(?)) AND state = 'inflight'",
            (chunk,),
        ).fetchone()
        taken = {row[SEQ_COLUMN]: row for row in jsoncodec.loads(rows)}
        for seq in seqs:
            row = taken.get(seq)
            if row is not None:
                self.claimed.append(stored_from_json(row))
            else:
                self._one_by_one(seq)

    def _one_by_one(self, seq: int) -> None:
        row = self.conn.execute(
            f"SELECT {STORED_COLUMNS} FROM deliveries WHERE seq = ? AND state = 'pending'",
            (seq,),
        ).fetchone()
        if row is None:
            return  # claimed or rescheduled earlier in this call
        delivery = stored_from_row(row)
        if delivery.id in self.exclude_ids:
            self.skipped.add(seq)
        elif not (delivery.ordered and _defer_if_blocked(self.conn, delivery, self.now)):
            self.conn.execute(
                "UPDATE deliveries SET state = 'inflight', updated_at = ? WHERE seq = ?",
                (self.now, seq),
            )
            self.claimed.append(replace(delivery, state=DeliveryState.INFLIGHT))


def _head(conn: sqlite3.Connection, now: float, size: int, skip: set[int]) -> list[Candidate]:
    (rows,) = conn.execute(
        "SELECT json_group_array(json_array(next_attempt_at, seq)) FROM ("
        "SELECT next_attempt_at, seq FROM deliveries INDEXED BY deliveries_due "
        "WHERE state = 'pending' AND batch_window IS NULL AND next_attempt_at <= ? "
        "AND seq NOT IN (SELECT value FROM json_each(?)) ORDER BY next_attempt_at LIMIT ?)",
        (now, json.dumps(sorted(skip)), size),
    ).fetchone()
    return sorted((at, seq) for at, seq in jsoncodec.loads(rows))


def _window(
    conn: sqlite3.Connection, now: float, exclude_destinations: frozenset[str]
) -> list[Candidate]:
    """The allowed rows among the first WINDOW due entries (read from the index alone)."""
    rows = conn.execute(
        "SELECT next_attempt_at, seq FROM (SELECT next_attempt_at, seq, destination "
        "FROM deliveries INDEXED BY deliveries_due "
        "WHERE state = 'pending' AND batch_window IS NULL "
        "AND next_attempt_at <= ? "
        "ORDER BY next_attempt_at LIMIT ?) WHERE destination IS NULL "
        "OR destination NOT IN (SELECT value FROM json_each(?)) ORDER BY next_attempt_at",
        (now, WINDOW, id_list(exclude_destinations)),
    ).fetchall()
    return [(at, seq) for at, seq in rows]


def _beyond_window(conn: sqlite3.Connection, now: float) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM deliveries INDEXED BY deliveries_due "
            "WHERE state = 'pending' AND batch_window IS NULL "
            "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT 1 OFFSET ?",
            (now, WINDOW),
        ).fetchone()
        is not None
    )


def _due_of(conn: sqlite3.Connection, destination: str | None, now: float) -> Iterator[Candidate]:
    after: Candidate = (float("-inf"), -1)
    while True:
        rows = conn.execute(
            "SELECT next_attempt_at, seq FROM deliveries INDEXED BY deliveries_destination "
            "WHERE state = 'pending' AND batch_window IS NULL AND destination IS ? "
            "AND next_attempt_at <= ? "
            "AND (next_attempt_at, seq) > (?, ?) "
            "ORDER BY next_attempt_at, seq LIMIT ?",
            (destination, now, *after, CHUNK),
        ).fetchall()
        yield from ((at, seq) for at, seq in rows)
        if len(rows) < CHUNK:
            return
        after = rows[-1]


def _defer_if_blocked(conn: sqlite3.Connection, delivery: StoredDelivery, now: float) -> bool:
    if delivery.order_id is None:
        return False
    blocker = conn.execute(
        "SELECT state, next_attempt_at FROM deliveries WHERE order_id = ? AND trigger_name = ? "
        "AND seq < ? AND state IN ('pending', 'inflight', 'held') ORDER BY seq LIMIT 1",
        (delivery.order_id, delivery.trigger, delivery.seq),
    ).fetchone()
    if blocker is None:
        return False
    state, blocker_next = blocker
    if state == DeliveryState.PENDING and blocker_next > now:
        until = blocker_next
    elif state == DeliveryState.HELD:
        until = now + HELD_RECHECK
    else:
        until = now + BLOCKED_RECHECK
    conn.execute(
        "UPDATE deliveries SET next_attempt_at = ?, updated_at = ? WHERE seq = ?",
        (until, now, delivery.seq),
    )
    return True
