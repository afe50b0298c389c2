"""`WebhookReceiver`: a real aiohttp server on 127.0.0.1, in a thread of its own.

Running in its own thread and loop, it answers whatever the test's own event loop is doing —
a daemon subprocess, a plugin awaited in the test — and works in sync and async tests alike.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from postbackd import jsoncodec
from postbackd.testing.waiting import until

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return jsoncodec.loads(self.body)


class WebhookReceiver:
    """An aiohttp server on 127.0.0.1 in a thread of its own; records every request.

    With an `ssl_context` it speaks HTTPS (``url`` then says https://): a receiver that
    requires a client certificate is a context with ``verify_mode = ssl.CERT_REQUIRED``.
    """

    def __init__(self, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None) -> None:
        self.host, self.port = host, 0
        self.ssl_context = ssl_context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._scripts: dict[str, list[int]] = {}
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._delays: dict[str, float] = {}
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def respond(self, path: str, *statuses: int) -> None:
        """Answer requests to `path` with these statuses in turn; the last one repeats."""
        with self._lock:
            self._scripts[path] = list(statuses)

    def delay(self, path: str, seconds: float) -> None:
        """Answer requests to `path` only after `seconds` (a slow receiver)."""
        with self._lock:
            self._delays[path] = seconds

    def handle(self, method: str, path: str, handler: Handler) -> None:
        """Answer ``METHOD path`` with ``await handler(request)``, run in the server thread."""
        with self._lock:
            self._handlers[(method.upper(), path)] = handler

    async def wait_for(
        self, count: int, *, path: str | None = None, timeout: float = 10.0
    ) -> list[ReceivedRequest]:
        """The requests (to `path`) once `count` arrived; fails after `timeout` seconds."""

        def matching() -> list[ReceivedRequest]:
            return [r for r in self.requests if path is None or r.path == path]

        await until(lambda: len(matching()) >= count, timeout, f"{count} requests to {path}")
        return matching()

    def webhook_ids(self, field: str = "eventId") -> dict[str, set[str]]:
        """The payload's `field` (the built-in JSON templates' event id) → the ``webhook-id``
        headers it arrived with: more than one id for an event is a duplicate delivery."""
        seen: dict[str, set[str]] = {}
        for request in self.requests:
            seen.setdefault(request.json()[field], set()).add(request.headers["webhook-id"])
        return seen

    async def wait_events(self, wanted: set[str], timeout: float = 20.0) -> None:
        """Wait until every event id in `wanted` arrived (see `webhook_ids`)."""
        await until(
            lambda: wanted <= set(self.webhook_ids()),
            timeout,
            f"{len(wanted)} events to arrive",
        )

    def start(self) -> WebhookReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Close the server (a receiver that goes away); stopping twice is harmless."""
        if self._loop.is_closed():
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        received = ReceivedRequest(
            request.method,
            request.path,
            dict(request.query),
            dict(request.headers),
            body,
            time.time(),
        )
        with self._lock:
            self._requests.append(received)
            handler = self._handlers.get((request.method, request.path))
            statuses = self._scripts.get(request.path)
            delay = self._delays.get(request.path, 0.0)
            status = 200
            if statuses:
                status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        if delay:
            await asyncio.sleep(delay)
        if handler is not None:
            return await handler(request)
        return web.Response(status=status, text="ok" if status < 300 else "failed (scripted)")
