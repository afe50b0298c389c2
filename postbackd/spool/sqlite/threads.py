"""The spool's two SQLite threads: a writer that group-commits, and a reader.

SQLite calls block, so they never run on the event loop. Every write is a function run on the
writer thread. The writer takes the first queued operation, drains whatever else is queued (up
to MAX_BATCH), runs them all in ONE transaction and COMMITs once. Should one of them fail, the
batch is rolled back and run again with each operation in its own SAVEPOINT, so a failing
operation fails only its own caller. Callers are released only after that
COMMIT: concurrent writers share one fsync, and no one hears "stored" before it is on disk.

With ``synchronous = FULL``, a batch none of whose writes must survive a power cut (claims and
outcomes: `durable=False`) is committed without its own fsync; the next durable commit — an
accepted event — syncs the log with it. Losing such a write to a power cut means a delivery
is attempted again (the same webhook-id), never that an event is lost; and it keeps the
fsyncs off the path from an accepted event to its delivery.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_BATCH = 500

Operation = Callable[[sqlite3.Connection], Any]
ErrorMapper = Callable[[BaseException], BaseException]


@dataclass(slots=True)
class _Job:
    operation: Operation
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    durable: bool = True


_Settled = tuple[_Job, Any, BaseException | None]


class ConnectionThread:
    """One thread that owns one SQLite connection and runs queued operations on it."""

    def __init__(
        self, name: str, connect: Callable[[], sqlite3.Connection], map_error: ErrorMapper
    ) -> None:
        self._connect = connect
        self._map_error = map_error
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    async def start(self) -> None:
        """Open the connection on the thread; raises what opening raised."""
        self._thread.start()
        await asyncio.wrap_future(self._ready)

    def call(self, operation: Operation, *, durable: bool = True) -> asyncio.Future[Any]:
        """Queue `operation(connection)`; the future resolves once it is done (and committed).

        `durable=False`: a write a power cut may undo (see the module docstring)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(operation, future, loop, durable))
        return future

    async def stop(self) -> None:
        """Run what is queued, close the connection, and join the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)

    def _main(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                stopping = self._drain(batch)
                try:
                    settled = self._run(conn, batch)
                except Exception as exc:  # the connection itself failed: callers must hear
                    settled = self._fail_all(batch, exc)
                _settle(settled)
        finally:
            conn.close()

    def _drain(self, batch: list[_Job]) -> bool:
        """Add to `batch` what is queued now (the reader runs one at a time); True at stop."""
        return False

    def _run(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[_Settled]:
        """Run one read in a read transaction (a consistent snapshot for multi-query reads)."""
        (job,) = batch
        try:
            conn.execute("BEGIN")
            try:
                value = job.operation(conn)
            finally:
                conn.execute("COMMIT")
        except Exception as exc:
            return self._fail_all(batch, exc)
        return [(job, value, None)]

    def _fail_all(self, batch: list[_Job], exc: BaseException) -> list[_Settled]:
        error = self._map_error(exc)
        return [(job, None, error) for job in batch]


class WriterThread(ConnectionThread):
    """The one writer: group commit, one COMMIT per batch (savepoints only after a failure)."""

    def __init__(
        self,
        name: str,
        connect: Callable[[], sqlite3.Connection],
        map_error: ErrorMapper,
        synchronous: str = "FULL",
    ) -> None:
        super().__init__(name, connect, map_error)
        self.commits = 0
        self.relaxed_commits = 0  # committed without an fsync of their own
        self._relax = synchronous == "FULL"
        self._synchronous = synchronous

    def _drain(self, batch: list[_Job]) -> bool:
        while len(batch) < MAX_BATCH:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return False
            if job is None:
                return True
            batch.append(job)
        return False

    def _run(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[_Settled]:
        """The whole batch in one transaction; only if an operation fails is it run again with
        one SAVEPOINT per operation (a savepoint costs about a third of a small write)."""
        try:
            self._set_synchronous(conn, batch)
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return self._fail_all(batch, exc)
        try:
            settled: list[_Settled] = [(job, job.operation(conn), None) for job in batch]
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return self._run_isolated(conn, batch)
        return self._commit(conn, batch, settled)

    def _set_synchronous(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        if not self._relax:
            return
        wanted = "FULL" if any(job.durable for job in batch) else "NORMAL"
        if wanted != self._synchronous:
            conn.execute(f"PRAGMA synchronous = {wanted}")
            self._synchronous = wanted

    def _run_isolated(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[_Settled]:
        """Each operation in its own SAVEPOINT: a failing one fails only its own caller.

        Operations are functions of the database alone, so running them again after the
        ROLLBACK of the first try gives what they would have given.
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return self._fail_all(batch, exc)
        settled: list[_Settled] = []
        for job in batch:
            try:
                conn.execute("SAVEPOINT operation")
                value = job.operation(conn)
                conn.execute("RELEASE operation")
            except Exception as exc:
                if not self._roll_back_one(conn):
                    return self._fail_all(batch, exc)  # SQLite dropped the whole transaction
                settled.append((job, None, self._map_error(exc)))
            else:
                settled.append((job, value, None))
        return self._commit(conn, batch, settled)

    def _commit(
        self, conn: sqlite3.Connection, batch: list[_Job], settled: list[_Settled]
    ) -> list[_Settled]:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return self._fail_all(batch, exc)
        self.commits += 1
        self.relaxed_commits += self._synchronous != "FULL" and self._relax
        return settled

    @staticmethod
    def _roll_back_one(conn: sqlite3.Connection) -> bool:
        if not conn.in_transaction:
            return False
        try:
            conn.execute("ROLLBACK TO operation")
            conn.execute("RELEASE operation")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return False
        return True


def _settle(results: list[_Settled]) -> None:
    """Hand results to their event loops: one wake-up per loop, not one per caller."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
    for settled in results:
        by_loop.setdefault(settled[0].loop, []).append(settled)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:
            pass  # the loop is closed: no one is waiting any more


def _resolve(items: list[_Settled]) -> None:
    for job, value, exc in items:
        future = job.future
        if future.cancelled():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)
