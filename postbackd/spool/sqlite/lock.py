"""Who owns a spool: an advisory lock on ``<spool>.lock``, held while the owner has it open.

The kernel drops the lock when its process dies (even by ``kill -9``), so a lock that is free
means no live owner: whoever takes it may put deliveries left ``inflight`` back to pending.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from postbackd.spool.model import SpoolError

OWNER_WAIT = 5.0  # an exclusive opener waits this long for a short CLI command to finish


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def acquire_owner_lock(path: Path, exclusive: bool) -> int | None:
    """The locked file descriptor, or None when another process owns the spool.

    With `exclusive`, waiting up to OWNER_WAIT and then raising `SpoolError` replaces None.
    """
    target = lock_path(path)
    try:
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SpoolError(
            f"cannot open the lock file {target}: {exc.strerror}; check the permissions of "
            "the spool's directory"
        ) from None
    deadline = time.monotonic() + (OWNER_WAIT if exclusive else 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            holder = _read_pid(fd)
            os.close(fd)
            if not exclusive:
                return None
            raise SpoolError(
                f"spool {path} is in use by another postbackd (pid {holder or 'unknown'}, lock "
                f"{target}); stop it, or give this daemon its own [daemon] spool"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
