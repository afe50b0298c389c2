"""Why the spool cannot store now, said so an operator can act: SQLite's failures mapped to
`SpoolUnavailable`/`SpoolError`, and the `min_free` guard on intake."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

from postbackd.plugin import SpoolUnavailable
from postbackd.spool.model import SpoolError

_UNAVAILABLE = {
    "SQLITE_FULL": ("the disk is full", "free disk space"),
    "SQLITE_READONLY": (
        "the file is read-only",
        "check the permissions of the file and its directory",
    ),
    "SQLITE_IOERR": ("an I/O error occurred", "check the disk and the system log"),
    "SQLITE_BUSY": (
        "another process held its lock too long",
        "try again; look for a stuck postbackd command",
    ),
    "SQLITE_LOCKED": ("it is locked", "try again"),
    "SQLITE_CANTOPEN": ("the file cannot be opened", "check that it exists and is writable"),
    "SQLITE_PERM": ("access was denied", "check the permissions of the file and its directory"),
}


def storage_error(path: Path, exc: BaseException, *, writing: bool) -> BaseException:
    """SQLite's failures as errors an operator can act on; other errors pass unchanged."""
    if not isinstance(exc, sqlite3.Error):
        return exc
    name = getattr(exc, "sqlite_errorname", "") or ""
    for prefix, (what, action) in _UNAVAILABLE.items():
        if name.startswith(prefix):
            verb = "written" if writing else "read"
            message = f"spool {path} cannot be {verb}: {what} ({exc}); {action}"
            return SpoolUnavailable(message) if writing else SpoolError(message)
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return SpoolError(
            f"spool {path} is damaged ({exc}); stop postbackd, move the file aside and restart "
            "(the `sqlite3 .recover` command may save its rows)"
        )
    return exc


FRESH = 0.1  # a measurement younger than this is trusted for a refusal


class FreeSpaceGuard:
    """Refuses intake that would take the spool's file system below `min_free` free bytes.

    Free space is measured at most once per INTERVAL (a ``statvfs`` costs a thread hop), so a
    burst of large batches between two measurements could fill the disk past `min_free`. Each
    admitted write therefore counts what it will take (`write_cost`: the rows land in the WAL
    and again in the database file, plus indexes) against the last measurement until the next
    one: intake refuses before the disk fills, not a second after. Before refusing, and after a
    write failed for want of space, it measures again, so it lets intake in as soon as space
    returns.
    """

    INTERVAL = 1.0
    OVERHEAD_FACTOR = 3  # WAL copy + database page + index and free-page slack
    BATCH_OVERHEAD = 16 * 1024  # page headers, the deliveries' rows, the commit record

    def __init__(self, path: Path, min_free: int) -> None:
        self.path = path
        self.min_free = min_free
        self.free: int | None = None
        self.measured = float("-inf")

    @classmethod
    def write_cost(cls, payload_bytes: int) -> int:
        """The disk space a batch holding `payload_bytes` of bodies may take, at most."""
        return cls.OVERHEAD_FACTOR * payload_bytes + cls.BATCH_OVERHEAD

    async def measure(self) -> None:
        if self.min_free > 0:
            self.measured = time.monotonic()
            self.free = (await asyncio.to_thread(shutil.disk_usage, self.path.parent)).free

    def remeasure_soon(self) -> None:
        """A write failed (the disk may be full): measure again before the next admission."""
        self.measured = float("-inf")

    async def check(self, cost: int = 0) -> None:
        """Raise `SpoolUnavailable` when writing `cost` bytes would leave less than `min_free`;
        else count `cost` as taken until the next measurement."""
        if self.min_free <= 0:
            return
        if time.monotonic() - self.measured >= self.INTERVAL:
            await self.measure()
        if self.free is None:
            return
        if self.free - cost < self.min_free and time.monotonic() - self.measured >= FRESH:
            await self.measure()  # before refusing, look again: space may have been freed
        if self.free - cost < self.min_free:
            raise SpoolUnavailable(
                f"spool {self.path}: {self.free // 2**20} MiB free on its file system; this "
                f"write needs up to {-(-cost // 2**20)} MiB, which would leave it below min_free "
                f"({self.min_free // 2**20} MiB); free disk space (or send smaller batches)"
            )
        self.free -= cost
