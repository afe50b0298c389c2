"""The aiohttp pieces every HTTP listener of postbackd shares: JSON answers and errors, the
bearer-token check, the application factory with its error middleware, listen addresses.

The admin API (`postbackd.api`), the web UI and the HTTP source all build on these; nothing
here knows about the daemon, so a source plugin can import it without pulling in the rest.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from postbackd import jsoncodec

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=jsoncodec.dumps(data), status=status, content_type="application/json")


def json_error(status: int, message: str, field: str | None = None) -> web.Response:
    return json_response({"error": message, "field": field}, status)


def bearer_ok(request: web.Request, token: str | None) -> bool:
    """Whether the request carries `token` (always true when no token is configured)."""
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token)


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


def build_app(routes: list[web.RouteDef], *, max_body: int = 1024 * 1024) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=max_body)
    app.router.add_routes(routes)
    return app


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:8787"`` / ``"[::1]:8787"`` → (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)
