"""Helper processes (receiver, load generator, SMTP server) driven over a pipe.

Each helper is a `spawn`ed process running `serve(conn, ...)`; the harness sends a request
tuple and waits — with a deadline — for the one reply. Stopping is bounded too: a polite
"stop", then terminate, then kill.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

_CTX = multiprocessing.get_context("spawn")


class ChildError(RuntimeError):
    """A helper process failed, died or did not answer in time."""


class Child:
    def __init__(self, name: str, target: Callable[..., None], *args: Any) -> None:
        self.name = name
        self._conn, child_end = _CTX.Pipe()
        self._process = _CTX.Process(target=target, args=(child_end, *args), name=name, daemon=True)
        self._child_end = child_end

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    async def start(self, timeout: float = 30.0) -> Any:
        """Start the process and wait for its first message (it says when it is ready)."""
        self._process.start()
        self._child_end.close()
        return await self._receive(timeout)

    async def call(self, *request: Any, timeout: float = 30.0) -> Any:
        self._conn.send(request)
        return await self._receive(timeout)

    async def _receive(self, timeout: float) -> Any:
        ready = await asyncio.to_thread(self._conn.poll, timeout)
        if not ready:
            raise ChildError(f"{self.name} did not answer within {timeout:g}s")
        try:
            kind, value = self._conn.recv()
        except EOFError:
            raise ChildError(f"{self.name} exited (code {self._process.exitcode})") from None
        if kind == "error":
            raise ChildError(f"{self.name} failed: {value}")
        return value

    def stop(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()


def reply(conn: Connection, value: Any) -> None:
    conn.send(("ok", value))


def reply_error(conn: Connection, exc: BaseException) -> None:
    conn.send(("error", f"{type(exc).__name__}: {exc}"))


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (as `postbackd run` uses it), so helpers cost as little as can be."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
