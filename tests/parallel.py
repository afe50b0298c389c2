"""What the test fixtures need to know when pytest-xdist runs the suite on several workers.

Each worker is its own pytest session, so a session fixture that starts a shared server runs
once per worker: the start must happen once (the others wait and find it running), and no
worker may stop it at its end while the others still use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def in_worker() -> bool:
    """True in a pytest-xdist worker, where other sessions run beside this one."""
    return "PYTEST_XDIST_WORKER" in os.environ


@contextlib.contextmanager
def one_at_a_time(name: str) -> Iterator[None]:
    """An exclusive lock across processes (of any session on this machine) for `name`."""
    path = Path(tempfile.gettempdir()) / f"postbackd-tests-{name}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
