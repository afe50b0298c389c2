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


class FreeSpaceGuard:
    """Refuses intake below `min_free` free bytes; measures at most once per INTERVAL."""

    INTERVAL = 1.0

    def __init__(self, path: Path, min_free: int) -> None:
        self.path = path
        self.min_free = min_free
        self.free: int | None = None
        self.measured = float("-inf")

    async def measure(self) -> None:
        if self.min_free > 0:
            self.measured = time.monotonic()
            self.free = (await asyncio.to_thread(shutil.disk_usage, self.path.parent)).free

    async def check(self) -> None:
        """Raise `SpoolUnavailable` when the spool's file system is below `min_free`."""
        if self.min_free <= 0:
            return
        if time.monotonic() - self.measured >= self.INTERVAL:
            await self.measure()
        if self.free is not None and self.free < self.min_free:
            raise SpoolUnavailable(
                f"spool {self.path}: only {self.free // 2**20} MiB free on its file system, "
                f"below min_free ({self.min_free // 2**20} MiB); free disk space"
            )
