"""The set-based writes (`writes.submit_many`, `writes.record_attempts`) leave the spool exactly
as writing each event and each outcome on its own does: same rows, same order, same answers;
and writes joined into one operation (`joined.WriteBatcher`) fail only their own caller."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from postbackd.spool.model import AttemptResult, DeliveryState, NewDelivery
from postbackd.spool.sqlite import writes
from postbackd.spool.sqlite.joined import WriteBatcher
from postbackd.spool.sqlite.schema import MIGRATIONS, SCHEMA_VERSION

S = DeliveryState
DELIVERY_COLUMNS = (
    "seq, id, event_id, trigger_name, plugin, customer, event_type, order_id, format, "
    "content_type, subject, body, typeof(body), render_error, state, held_reason, attempts, "
    "ordered, next_attempt_at, created_at = next_attempt_at, finished_at IS NULL, last_status, "
    "last_error, destination"
)


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for version in range(1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    return conn


def _new(i: int, state: S = S.PENDING, *, ordered: bool = False, **extra: object) -> NewDelivery:
    values: dict[str, object] = {
        "id": f"d{i}",
        "trigger": "t",
        "plugin": "webhook",
        "customer": "c",
        "event_type": "order.shipped",
        "order_id": "o1",
        "format": "json",
        "content_type": "application/json",
        "subject": None,
        "body": None if state is S.FAILED else '{"a": "é\\u2028"}'.encode(),
        "render_error": "boom" if state is S.FAILED else None,
        "state": state,
        "ordered": ordered,
        "supersede": False,
        "destination": "http://x:1",
    }
    values.update(extra)
    return NewDelivery(**values)  # type: ignore[arg-type]


def _event(i: int) -> writes.EventRow:
    return writes.EventRow(
        f"e{i}", "order.shipped", "c", "o1", "2026-01-01", "http", b'{"i":%d}' % i
    )


def _state(conn: sqlite3.Connection) -> tuple[list[tuple[object, ...]], ...]:
    return (
        conn.execute(f"SELECT {DELIVERY_COLUMNS} FROM deliveries ORDER BY seq").fetchall(),
        conn.execute("SELECT *, typeof(body) FROM events ORDER BY seq").fetchall(),
        conn.execute(
            "SELECT delivery_id, number, started_at, duration, outcome, status, error, request, "
            "response FROM attempts ORDER BY id"
        ).fetchall(),
    )


BATCH = [
    (_event(1), [_new(1)]),
    (_event(2), [_new(2, S.FAILED)]),
    (_event(1), [_new(1)]),  # the same event twice in one batch: a duplicate
    (_event(3), []),
    (_event(4), [_new(4, next_attempt_at=1234.5678901234567), _new(5, S.HELD, held_reason="x")]),
    (_event(6), [_new(6, ordered=True), _new(7, ordered=True)]),
]


def test_submit_many_is_submit_one_by_one(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(time, "time", lambda: 1700000000.25)
    bulk, single = _db(), _db()
    assert writes.submit_many(bulk, BATCH) == [writes.submit(single, *pair) for pair in BATCH]
    again = BATCH[:2]
    assert writes.submit_many(bulk, again) == [writes.submit(single, *pair) for pair in again]
    assert _state(bulk) == _state(single)


def test_record_attempts_is_record_attempt_one_by_one(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(time, "time", lambda: 1700000000.25)
    bulk, single = _db(), _db()
    for conn in (bulk, single):
        writes.submit_many(conn, BATCH)
        conn.execute("UPDATE deliveries SET state = 'inflight' WHERE id IN ('d1', 'd4', 'd6')")
        conn.execute("UPDATE deliveries SET next_attempt_at = 1800000000 WHERE id = 'd7'")

    def result(delivery_id: str, state: S, **extra: object) -> AttemptResult:
        values: dict[str, object] = {
            "delivery_id": delivery_id,
            "number": 1,
            "started_at": 1700000000.123456789,
            "duration": 0.001234,
            "outcome": "ok" if state is S.DONE else "retry",
            "new_state": state,
            "next_attempt_at": 1700000060.5 if state is S.PENDING else None,
            "status": 200 if state is S.DONE else 503,
            "error": None if state is S.DONE else "HTTP 503 ≠",
            "request": {"headers": {"webhook-id": delivery_id}, "body_bytes": 12},
            "response": {"status": 200, "body": "é"},
            "destination": "http://x:1",
        }
        values.update(extra)
        return AttemptResult(**values)  # type: ignore[arg-type]

    results = [
        result("d1", S.DONE),
        result("d4", S.PENDING),
        result("gone", S.DONE),  # purged meanwhile
        result("d6", S.DONE),  # ordered: wakes d7
        result("d5", S.CANCELLED, counted=False, outcome="fail", request=None, response=None),
    ]
    assert writes.record_attempts(bulk, results) == [
        writes.record_attempt(single, each) for each in results
    ]
    assert _state(bulk) == _state(single)
    woken = bulk.execute("SELECT next_attempt_at FROM deliveries WHERE id = 'd7'").fetchone()
    assert woken == (1700000000.25,)


async def test_joined_writes_fail_only_their_own_caller() -> None:
    """Writes joined into one operation: should the joined write raise, each runs again alone,
    and only the one that fails hears of it."""
    conn = _db()
    conn.execute("CREATE TABLE items (value TEXT NOT NULL CHECK (value != 'bad'))")
    queued: list[Callable[[sqlite3.Connection], Any]] = []

    def submit(operation: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        queued.append(operation)
        return future

    def write_many(conn: sqlite3.Connection, items: Sequence[str]) -> list[int]:
        return [conn.execute("INSERT INTO items VALUES (?)", (item,)).lastrowid for item in items]

    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    batcher: WriteBatcher[str, int] = WriteBatcher(submit, write_many, lambda exc: exc)
    answers = [batcher.add(item) for item in ("a", "bad", "c")]
    assert len(queued) == 1  # one operation for the three
    conn.execute("BEGIN")
    future.set_result(queued[0](conn))
    conn.execute("COMMIT")
    await asyncio.sleep(0)
    assert answers[0].result() and answers[2].result()
    with pytest.raises(sqlite3.IntegrityError):
        answers[1].result()
    assert conn.execute("SELECT value FROM items ORDER BY rowid").fetchall() == [("a",), ("c",)]
    later = batcher.add("d")  # the writer took the first batch: a new one opens
    assert len(queued) == 2 and not later.done()
