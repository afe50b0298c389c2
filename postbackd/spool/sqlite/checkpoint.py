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
from collections.abc import Callable

from postbackd.logs import get_logger

log = get_logger("postbackd.spool.sqlite.store")

INTERVAL = 0.5
WRITER_AUTOCHECKPOINT = 20_000  # pages (≈ 80 MB): the writer checkpoints only if this thread cannot


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
