"""Slow and greedy HTTP clients are cut off: header and body read timeouts, a connection cap.

aiohttp has no read timeout of its own on the server side: a client that sends its headers one
byte a minute (slowloris), or declares a body and never sends it, holds a connection and a
file descriptor for as long as it likes, until real intake and ``/readyz`` starve. Every
listener of the daemon (``[sources.http]`` and ``[daemon] admin_listen``) is therefore served
through `postbackd.web.serve`, which wraps each connection's aiohttp protocol in a
`GuardedConnection`:

- ``header_timeout``: the request line and headers must arrive within this long from the
  first byte of a request (or the opening of the connection). Otherwise the connection gets a
  408 and is closed.
- ``body_timeout``: a request's body must arrive within this long after its headers; else the
  read fails inside the handler, which answers 408 (``deadlines`` middleware) and the
  connection is closed.
- ``max_connections``: at the cap, the oldest connection still waiting for its headers is
  closed to make room (a slowloris attack cannot shut real clients out); when every connection
  is busy with a real request, the new one gets a 503.

An idle keep-alive connection is bounded by aiohttp's own keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from postbackd.logs import get_logger

log = get_logger("postbackd.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ConnectionLimits:
    """Per listener: how long a client may take to send a request, and how many may connect."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 256


class BodyTimeout(Exception):
    """The body of a request did not arrive within ``body_timeout``."""


class ConnectionGuard:
    """The listener's connections: makes the guarded protocols and enforces the cap."""

    def __init__(self, limits: ConnectionLimits, listen: str) -> None:
        self.limits = limits
        self.listen = listen
        self.open: dict[int, GuardedConnection] = {}  # by id() of aiohttp's protocol
        self.server: web.Server | None = None

    def __call__(self) -> GuardedConnection:
        assert self.server is not None
        return GuardedConnection(self, self.server())

    def of(self, request: web.Request) -> GuardedConnection | None:
        return self.open.get(id(request.protocol))

    def admit(self) -> bool:
        """Room for one more connection, evicting the oldest one still sending headers."""
        if len(self.open) < self.limits.max_connections:
            return True
        waiting = [c for c in self.open.values() if c.awaiting_headers_since is not None]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.awaiting_headers_since or 0.0)
        oldest.cut("evicted: connection cap reached while it had not sent its headers", 408)
        return True


_GUARD = web.AppKey("postbackd_connection_guard", ConnectionGuard)


class GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, with deadlines on receiving each request."""

    def __init__(self, guard: ConnectionGuard, inner: Any) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.refused = False
        self.awaiting_headers_since: float | None = None
        self.between_requests = False
        self._timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None
        if not self.guard.admit():
            self.refused = True
            log.warning(
                "http connection refused: too many connections",
                listen=self.guard.listen,
                peer=self.peer,
                max_connections=self.guard.limits.max_connections,
            )
            _answer_and_close(
                transport, 503, "too many connections: try again shortly", "connection"
            )
            return
        self.guard.open[id(self.inner)] = self
        self.inner.connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.between_requests:  # the first bytes of the next request on this connection
            self.between_requests = False
            self._await_headers()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.refused:
            return None
        result: bool | None = self.inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self.refused:
            return
        self.guard.open.pop(id(self.inner), None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if not self.refused:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if not self.refused:
            self.inner.resume_writing()

    # ---------------------------------------------------------------- deadlines

    def headers_received(self, request: web.Request) -> None:
        """The handler runs: headers are in; the body, if any, now has `body_timeout`."""
        self.awaiting_headers_since = None
        self._cancel_timer()
        content = request.content
        if request.body_exists and not content.is_eof():
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(
                self.guard.limits.body_timeout, self._body_too_slow, request
            )
            content.on_eof(self._cancel_timer)

    def request_done(self) -> None:
        """The handler returned: the next request's header clock starts at its first byte."""
        self._cancel_timer()
        self.between_requests = True

    def cut(self, reason: str, status: int) -> None:
        """Answer `status` (when nothing was answered yet) and close the connection."""
        self._cancel_timer()
        log.warning("http connection cut", listen=self.guard.listen, peer=self.peer, reason=reason)
        if self.transport is not None and not self.transport.is_closing():
            _answer_and_close(self.transport, status, reason, "connection")

    def _await_headers(self) -> None:
        self.awaiting_headers_since = time.monotonic()
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.guard.limits.header_timeout, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._timer = None
        self.cut(
            f"request headers not received within header_timeout "
            f"({self.guard.limits.header_timeout:g}s)",
            408,
        )

    def _body_too_slow(self, request: web.Request) -> None:
        self._timer = None
        limit = self.guard.limits.body_timeout
        log.warning(
            "http request body too slow",
            listen=self.guard.listen,
            peer=self.peer,
            path=request.path,
            body_timeout_s=limit,
        )
        request.content.set_exception(
            BodyTimeout(f"request body not received within body_timeout ({limit:g}s)")
        )

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _answer_and_close(
    transport: asyncio.BaseTransport, status: int, error: str, field: str
) -> None:
    """A minimal HTTP/1.1 answer with a JSON ``{"error", "field"}`` body, then close."""
    reason = {408: "Request Timeout", 503: "Service Unavailable"}.get(status, "Error")
    body = json.dumps({"error": error, "field": field}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        transport.write(head + body)  # type: ignore[attr-defined]
    finally:
        transport.close()


@web.middleware
async def deadlines(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection its headers are in, answer 408 for a body too slow to arrive."""
    guard = request.app.get(_GUARD)
    connection = guard.of(request) if guard is not None else None
    if connection is None:
        return await handler(request)
    connection.headers_received(request)
    try:
        return await handler(request)
    except BodyTimeout as exc:
        response = web.json_response({"error": str(exc), "field": "body"}, status=408)
        response.force_close()
        request.content.feed_eof()  # nothing more will be read: aiohttp must not drain it
        return response
    finally:
        connection.request_done()


def guard_app(app: web.Application, limits: ConnectionLimits, listen: str) -> ConnectionGuard:
    """Attach a guard to an app not yet started (its middlewares include `deadlines`)."""
    guard = ConnectionGuard(limits, listen)
    app[_GUARD] = guard
    return guard


class _GuardedSite(web.BaseSite):
    """A TCP site whose connections go through the guard."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard) -> None:
        super().__init__(runner)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        self._guard.server = self._runner.server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard, self._host, self._port, reuse_address=True
        )


async def guarded_runner(
    app: web.Application, limits: ConnectionLimits, listen: str
) -> web.AppRunner:
    """The runner of `app`, its connections watched by a guard (see `guarded_site`)."""
    guard_app(app, limits, listen)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=max(limits.header_timeout, 15.0),
    )
    await runner.setup()
    return runner


def guarded_site(runner: web.AppRunner, host: str, port: int, app: web.Application) -> web.BaseSite:
    """The TCP site of a `guarded_runner`: each connection goes through `app`'s guard."""
    return _GuardedSite(runner, host, port, app[_GUARD])
