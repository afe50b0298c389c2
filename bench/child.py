"""Helper processes (receiver, load generator, SMTP server) driven over a pipe.

Each helper is a `spawn`ed process running `serve(conn, ...)`; the harness sends a request
tuple and waits — with a deadline — for the one reply. Stopping is bounded too: a polite
"stop", then terminate, then kill.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Callable, Coroutine
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
        kind, value = await asyncio.to_thread(self._wait_reply, timeout)
        if kind == "error":
            raise ChildError(f"{self.name} failed: {value}")
        return value

    def _wait_reply(self, timeout: float) -> tuple[str, Any]:
        """On a worker thread: a reply can be large (every latency of a run) and come in parts."""
        if not self._conn.poll(timeout):
            raise ChildError(f"{self.name} did not answer within {timeout:g}s")
        try:
            reply: tuple[str, Any] = self._conn.recv()
        except EOFError:
            raise ChildError(f"{self.name} exited (code {self._process.exitcode})") from None
        return reply

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


def serve_requests(
    conn: Connection,
    loop: asyncio.AbstractEventLoop,
    handle: Callable[[tuple[Any, ...]], Coroutine[Any, Any, Any]],
) -> threading.Thread:
    """Answer the harness from a thread of the helper: each request runs on `loop`.

    The pipe stays blocking (an event loop's reader would make it non-blocking, and a large
    reply would then fail half-sent). The thread sets `stopped` on the loop at "stop" or EOF.
    """

    def answer() -> None:
        while True:
            try:
                request = conn.recv()
            except EOFError:
                request = ("stop",)
            if request[0] == "stop":
                loop.call_soon_threadsafe(_stop, loop)
                return
            try:
                reply(conn, asyncio.run_coroutine_threadsafe(handle(request), loop).result())
            except Exception as exc:
                reply_error(conn, exc)

    thread = threading.Thread(target=answer, name="harness-pipe", daemon=True)
    thread.start()
    return thread


def _stop(loop: asyncio.AbstractEventLoop) -> None:
    loop.stop()


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
