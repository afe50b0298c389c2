"""WAL checkpoints on a thread of their own, so the writer never stalls on them.

SQLite checkpoints automatically in the connection that commits once the log passes 1,000
pages: the writer thread would copy megabytes into the database file and fsync it while
every caller waiting for a commit — an HTTP source about to answer 202 — waits too. Here the
writer's automatic checkpoints start only at a far larger log (a safety net), and this thread
runs PASSIVE checkpoints every `INTERVAL` seconds on its own connection: they copy what no
reader still needs, concurrently with the writer, never blocking it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable

from postbackd.logs import get_logger
from postbackd.spool.model import SpoolError

log = get_logger("postbackd.spool.sqlite.store")

INTERVAL = 0.5
WRITER_AUTOCHECKPOINT = 20_000  # pages (≈ 80 MB): the writer checkpoints only if this thread cannot
TRUNCATE_TRIES = 20  # each waits up to the busy timeout for the daemon's readers and writer


class Checkpointer:
    """`start()` once the spool is open; `await stop()` before the writer closes."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._interval = INTERVAL
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name="postbackd-spool-checkpoint", daemon=True
        )
        self.checkpoints = 0

    def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)

    def _main(self) -> None:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            log.warning("spool checkpoints left to the writer", error=str(exc))
            return
        failing = False
        try:
            while not self._stopping.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                    failing = False
                except sqlite3.Error as exc:  # the writer's own checkpoints remain as a net
                    if not failing:  # once per streak, not twice a second
                        log.warning("spool checkpoint failed; trying again", error=str(exc))
                    failing = True
        finally:
            conn.close()


def truncate_log(connect: Callable[[], sqlite3.Connection], path: object) -> None:
    """Copy the whole write-ahead log into the database file and truncate it to zero bytes.

    Why: a delete only appends new page versions to the log; the old versions (with the
    deleted rows) stay in ``-wal`` until the log is overwritten, which may be never. An erase
    is complete only once they are gone. TRUNCATE waits (busy timeout) for the daemon's
    writer and for readers still on an older snapshot; it is retried a few times, since the
    daemon's short reads come and go. Raises SpoolError when the log stays in use.
    """
    conn = connect()
    try:
        for _ in range(TRUNCATE_TRIES):
            busy, _log_frames, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy == 0:
                return
            time.sleep(0.05)
    finally:
        conn.close()
    raise SpoolError(
        f"spool {path}: the write-ahead log could not be truncated: another connection kept "
        "reading an older snapshot; the rows are deleted, but old copies may remain in the "
        "-wal file until it is: run the command again, or stop postbackd and run it again"
    )
