"""Reading a dropped file on a thread of its own, so that nothing waits on a read that hangs.

`asyncio.to_thread` runs on the loop's default executor, whose threads the interpreter joins at
exit: one read stuck in the kernel (a FIFO, a hung network file system) would keep the daemon
from ever ending after SIGTERM. `read_off_loop` runs the read on a daemon thread instead and
awaits its result; the caller can stop awaiting at any time (shutdown, a stuck read), and the
thread is left behind without holding anything up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ReadInHand:
    """The file being read, and since when (monotonic): what /readyz reports when it hangs."""

    path: Path
    since: float

    def stuck_for(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.since


async def read_off_loop(function: Callable[[], T], name: str) -> T:
    """`function()` on a daemon thread; cancelling the await abandons the thread, not the loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return  # the caller stopped waiting (cancelled)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting task, which decides
            _call_soon(loop, settle, None, exc)
        else:
            _call_soon(loop, settle, result, None)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


def _call_soon(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: object
) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop is closed: nobody waits for this read any more
        pass
