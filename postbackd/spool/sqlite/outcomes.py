"""Attempt outcomes gathered into one write: every outcome that arrives while the writer is busy
joins the same operation.

At a few thousand attempts a second, one writer operation per outcome cost the event loop a
job, a closure and a wake-up of the writer thread each. Here the first outcome opens a batch
and queues ONE operation for it; the outcomes that follow join that batch until the writer
starts running it, and then the next outcome opens a new one. So a batch holds what ended
during the writer's previous transaction (`writes.record_attempts` writes it).

Each caller still gets a future of its own, resolved only after the COMMIT that holds its
outcome, exactly as with a write of its own.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from postbackd.spool.model import AttemptResult
from postbackd.spool.sqlite import writes

Submit = Callable[[Callable[[sqlite3.Connection], Any]], asyncio.Future[Any]]


class _Batch:
    """Outcomes waiting for the writer; closed (no more joiners) once the writer takes it."""

    __slots__ = ("closed", "futures", "results")

    def __init__(self) -> None:
        self.results: list[AttemptResult] = []
        self.futures: list[asyncio.Future[bool]] = []
        self.closed = False


class OutcomeBatcher:
    """Queues attempt outcomes on the writer, one operation per batch (see the module doc)."""

    def __init__(self, submit: Submit) -> None:
        self._submit = submit  # queue a non-durable write on the writer thread
        self._lock = threading.Lock()  # the loop adds, the writer thread closes
        self._open: _Batch | None = None

    def add(self, result: AttemptResult) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        with self._lock:
            batch = self._open
            if batch is None or batch.closed:
                batch = self._open = _Batch()
                opened = True
            else:
                opened = False
            batch.results.append(result)
            batch.futures.append(future)
        if opened:
            written = self._submit(lambda conn: self._run(conn, batch))
            written.add_done_callback(lambda done: _settle(batch, done))
        return future

    def _run(self, conn: sqlite3.Connection, batch: _Batch) -> list[bool]:
        """On the writer thread. Run again after a failed transaction: the same results."""
        with self._lock:
            batch.closed = True
        return writes.record_attempts(conn, batch.results)


def _settle(batch: _Batch, done: asyncio.Future[list[bool]]) -> None:
    error = None if done.cancelled() else done.exception()
    for index, future in enumerate(batch.futures):
        if future.cancelled():
            continue
        if done.cancelled():
            future.cancel()
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result()[index])
