"""Writes that arrive while the writer is busy, joined into one operation: intake batches and
attempt outcomes.

At a few thousand deliveries a second, one writer operation per outcome (or per intake
request) cost the event loop a job, a closure and a wake-up of the writer thread each, and
the writer its statements each. Statements are what hurts most: the sqlite3 module lets go of
the interpreter lock at every statement, and while the event loop is busy the writer waits up
to a switch interval (5 ms) to get it back — so three intake requests written apart (three
statements each) kept the writer 45–55 ms for 13–15 ms of its CPU, and every claim, outcome
and 202 queued behind it.

Here the first write of a kind opens a batch and queues ONE operation for it; the writes that
follow join that batch until the writer starts running it, and then the next one opens a new
batch. So a batch holds what arrived during the writer's previous transaction, and its
set-based statements (`writes.submit_many`, `writes.record_attempts`) cover all of them.

Each caller still gets a future of its own, resolved only after the COMMIT that holds its
write, exactly as with a write of its own; and a write that fails fails only its own caller:
should the joined statements raise, each write is run again alone in a SAVEPOINT.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

Submit = Callable[[Callable[[sqlite3.Connection], Any]], asyncio.Future[Any]]
WriteMany = Callable[[sqlite3.Connection, Sequence[Any]], list[Any]]
ErrorMapper = Callable[[BaseException], BaseException]

_Settled = tuple[Any, BaseException | None]


class _Batch:
    """Writes waiting for the writer; closed (no more joiners) once the writer takes it."""

    __slots__ = ("closed", "futures", "items")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.closed = False


class WriteBatcher(Generic[Item, Result]):
    """Queues writes of one kind on the writer, one operation per batch (see the module doc).

    `write_many(conn, items)` writes the items in order and returns one result per item;
    `submit` queues an operation on the writer thread.
    """

    def __init__(self, submit: Submit, write_many: WriteMany, map_error: ErrorMapper) -> None:
        self._submit = submit
        self._write_many = write_many
        self._map_error = map_error
        self._lock = threading.Lock()  # the loop adds, the writer thread closes
        self._open: _Batch | None = None

    def add(self, item: Item) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        with self._lock:
            batch = self._open
            opened = batch is None or batch.closed
            if opened:
                batch = self._open = _Batch()
            assert batch is not None
            batch.items.append(item)
            batch.futures.append(future)
        if opened:
            written = self._submit(lambda conn: self._run(conn, batch))
            written.add_done_callback(lambda done: _settle(batch, done))
        return future

    def _run(self, conn: sqlite3.Connection, batch: _Batch) -> list[_Settled]:
        """On the writer thread (run again, with the same items, after a failed transaction)."""
        with self._lock:
            batch.closed = True
        conn.execute("SAVEPOINT joined")
        try:
            results = self._write_many(conn, batch.items)
        except Exception:
            conn.execute("ROLLBACK TO joined")
            conn.execute("RELEASE joined")
            return [self._alone(conn, item) for item in batch.items]
        conn.execute("RELEASE joined")
        return [(result, None) for result in results]

    def _alone(self, conn: sqlite3.Connection, item: Any) -> _Settled:
        conn.execute("SAVEPOINT alone")
        try:
            (result,) = self._write_many(conn, [item])
        except Exception as exc:
            conn.execute("ROLLBACK TO alone")
            conn.execute("RELEASE alone")
            return None, self._map_error(exc)
        conn.execute("RELEASE alone")
        return result, None


def _settle(batch: _Batch, done: asyncio.Future[list[_Settled]]) -> None:
    error = None if done.cancelled() else done.exception()
    for index, future in enumerate(batch.futures):
        if future.cancelled():
            continue
        if done.cancelled():
            future.cancel()
        elif error is not None:
            future.set_exception(error)
        else:
            value, problem = done.result()[index]
            if problem is not None:
                future.set_exception(problem)
            else:
                future.set_result(value)
