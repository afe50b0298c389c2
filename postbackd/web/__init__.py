"""The aiohttp pieces every HTTP listener of postbackd shares: JSON answers and errors, the
bearer-token check, the application factory with its error middleware, listen addresses.

The admin API (`postbackd.api`), the web UI and the HTTP source all build on these; nothing
here knows about the daemon, so a source plugin can import it without pulling in the rest.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from postbackd import jsoncodec
from postbackd.web.guard import ConnectionLimits, deadlines, guarded_runner, guarded_site

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=jsoncodec.dumps(data), status=status, content_type="application/json")


def json_error(status: int, message: str, field: str | None = None) -> web.Response:
    return json_response({"error": message, "field": field}, status)


def same_secret(sent: str, expected: str) -> bool:
    """Whether credential `sent` equals `expected`, in constant time for equal lengths; never
    raises. `hmac.compare_digest` raises TypeError for a str that is not ASCII (a bearer token,
    a session cookie or a CSRF field with one "é" was a 500): both are compared as UTF-8 bytes
    instead, lone surrogates kept apart (``surrogatepass``) so they never equal a real token."""
    return hmac.compare_digest(
        sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def bearer_ok(request: web.Request, token: str | None) -> bool:
    """Whether the request carries `token` (always true when no token is configured)."""
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and same_secret(value.strip(), token)


def unauthorized() -> web.Response:
    response = json_error(401, "missing or wrong bearer token: send 'Authorization: Bearer TOKEN'")
    response.headers["WWW-Authenticate"] = 'Bearer realm="postbackd"'
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every 4xx/5xx answer is JSON ``{"error", "field"}``; no input turns into a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
    except RequestPayloadError as exc:  # e.g. a Content-Encoding: gzip body that is not gzip
        response = json_error(
            400,
            f"the request body cannot be read: {' '.join(str(exc).split())}; send it "
            "uncompressed or as valid gzip/deflate matching Content-Encoding",
            "body",
        )
        # The rest of the body cannot be read either: close the connection after answering,
        # and mark the body ended so that aiohttp does not try to drain it (which would raise
        # the same error again, outside any handler, as a logged traceback).
        response.force_close()
        request.content.feed_eof()
        return response


def build_app(routes: list[web.RouteDef], *, max_body: int = 1024 * 1024) -> web.Application:
    app = web.Application(middlewares=[deadlines, json_errors], client_max_size=max_body)
    app.router.add_routes(routes)
    return app


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:8787"`` / ``"[::1]:8787"`` → (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class ListenerUnavailable(OSError):
    """A listen address that cannot be bound: which listener, which address, and why.

    An OSError, so a caller that only knows "I/O failed" still catches it; the message is
    what an operator needs in the journal (the address and the kernel's reason, and what to do).
    """

    def __init__(self, label: str, listen: str, cause: OSError) -> None:
        self.label, self.listen = label, listen
        # asyncio words a failed bind "error while attempting to bind on address (...): ...":
        # the errno's own text is shorter and what the operator will search for.
        code = cause.errno
        reason = os.strerror(code) if code and code > 0 else (cause.strerror or str(cause))
        if cause.errno == errno.EADDRINUSE:
            hint = "another process holds the port: stop it or choose another address"
        elif cause.errno == errno.EACCES:
            hint = "ports below 1024 need privileges: choose a port above 1023"
        elif cause.errno == errno.EADDRNOTAVAIL:
            hint = "no interface of this machine has that address: use one it has"
        else:
            hint = "check the address"
        self.message = f"{label}: cannot listen on {listen}: {reason}; {hint}"
        super().__init__(cause.errno, self.message)

    def __str__(self) -> str:
        return self.message


async def serve(
    app: web.Application, listen: str, label: str, limits: ConnectionLimits
) -> web.AppRunner:
    """Start `app` on `listen`, every connection held to `limits` (`guard`); returns its runner.

    ListenerUnavailable (naming `label`) if the address cannot be bound: nothing is left
    running then.
    """
    host, port = split_listen(listen)
    runner = await guarded_runner(app, limits, listen)
    try:
        await guarded_site(runner, host, port, app).start()
    except OSError as exc:
        await runner.cleanup()
        if isinstance(exc, ListenerUnavailable):
            raise
        raise ListenerUnavailable(label, listen, exc) from exc
    return runner


async def probe_listen(listen: str, label: str) -> None:
    """Raise ListenerUnavailable when `listen` cannot be bound now (nothing is kept bound).

    A reload checks a new listen address this way before it swaps anything in, so an address
    that is taken rejects the reload instead of leaving the daemon without that listener.
    The kernel may still refuse the real bind a moment later (another process got there
    first); the caller reports that too.
    """
    host, port = split_listen(listen)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise ListenerUnavailable(label, listen, exc) from exc
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
            try:
                probe.bind(address)
            except OSError as exc:
                raise ListenerUnavailable(label, listen, exc) from exc


def same_listen(one: str | None, other: str | None) -> bool:
    """Whether two listen strings name the same (host, port)."""
    if one is None or other is None:
        return one is other
    return split_listen(one) == split_listen(other)
