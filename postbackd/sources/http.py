"""HTTP intake: ``POST /v1/events`` with one event or a JSON array of up to 1000.

The answer is 202 only after every event of the request is committed to the spool. Bad input
is a 400 naming the field (a batch is all-or-nothing), never a 5xx; 503 means "cannot store
now" (disk below `min_free`, spool unwritable, shutting down) and is safe to retry. The admin
API's routes are served on the same listener.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from postbackd.events import EventRejected, parse_events
from postbackd.logs import get_logger
from postbackd.plugin import (
    PluginContext,
    SpoolUnavailable,
    Submit,
    count_rejected,
    hookimpl,
    submit_many,
)
from postbackd.units import parse_size
from postbackd.web import (
    ConnectionLimits,
    bearer_ok,
    build_app,
    json_error,
    json_response,
    serve,
    unauthorized,
)

log = get_logger("postbackd.sources.http")

MAX_EVENTS = 1000


class HttpSource:
    """Listens on ``listen``; guards intake with ``token`` (required off loopback).

    ``listen`` is also what the supervisor reads to treat this source as a listener: the
    daemon is READY only once it is bound, and an address it cannot bind fails the start.
    """

    def __init__(self, settings: Mapping[str, Any], context: PluginContext) -> None:
        self.listen = str(settings.get("listen", "127.0.0.1:8787"))
        self.token: str | None = settings.get("token") or None
        self.max_body = parse_size(settings.get("max_body", "1MiB"))
        self.limits = ConnectionLimits.from_settings(settings, where="[sources.http]")
        self.context = context
        self._runner: web.AppRunner | None = None
        self._submit: Submit | None = None

    @property
    def ready(self) -> bool:
        return self._runner is not None

    async def start(self, submit: Submit) -> None:
        self._submit = submit
        routes = [web.post("/v1/events", self.post_events), *self.context.admin_routes]
        app = build_app(routes, max_body=self.max_body)
        self._runner = await serve(app, self.listen, "[sources.http] listen", self.limits)
        log.info("http source listening", listen=self.listen)

    async def reconfigure(self, settings: Mapping[str, Any]) -> bool:
        """Take a new token in place (the listener and its connections stay); a new `listen`
        or `max_body`, or new connection limits, need a new listener: False."""
        new = HttpSource(settings, self.context)
        if (new.listen, new.max_body, new.limits) != (self.listen, self.max_body, self.limits):
            return False
        self.token = new.token
        return True

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _count_rejected(self, reason: str) -> None:
        count_rejected(self._submit, reason)

    async def post_events(self, request: web.Request) -> web.Response:
        if not bearer_ok(request, self.token):
            self._count_rejected("unauthorized")
            return unauthorized()
        if request.content_length is not None and request.content_length > self.max_body:
            self._count_rejected("too_large")
            return _too_large(self.max_body)
        raw = await _read_body(request, self.max_body)
        if raw is None:
            self._count_rejected("too_large")
            return _too_large(self.max_body)
        try:
            events = parse_events(raw, max_events=MAX_EVENTS)
        except EventRejected as exc:
            self._count_rejected("invalid")
            log.info(
                "events rejected",
                source="http",
                error=exc.message,
                field=exc.field,
                peer=request.remote,
            )
            return json_response(exc.as_json(), 400)
        assert self._submit is not None
        try:
            results = await submit_many(self._submit, events)
        except SpoolUnavailable as exc:
            response = json_error(503, str(exc))
            response.headers["Retry-After"] = "5"
            return response
        except EventRejected as exc:
            self._count_rejected("invalid")
            return json_response(exc.as_json(), 400)
        return json_response(
            {
                "accepted": [r.event_id for r in results if not r.duplicate],
                "duplicates": [r.event_id for r in results if r.duplicate],
            },
            202,
        )


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is longer than `limit`.

    One ``read(n)`` returns what has arrived so far, which for a large batch is only its
    first part; so read until the end of the body.
    """
    body = bytearray()
    while True:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            return None


def _too_large(limit: int) -> web.Response:
    return json_error(
        413,
        f"request body larger than max_body ({limit} bytes): send smaller "
        "batches or raise [sources.http] max_body",
    )


@hookimpl
def postbackd_register_sources(register: Any) -> None:
    register("http", HttpSource)
