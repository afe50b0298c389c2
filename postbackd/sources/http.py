"""HTTP intake: ``POST /v1/events`` with one event or a JSON array of up to 1000.

The answer is 202 only after every event of the request is committed to the spool. Bad input
is a 400 naming the field (a batch is all-or-nothing), never a 5xx; 503 means "cannot store
now" (disk below `min_free`, spool unwritable, shutting down) and is safe to retry. The admin
API's routes are served on the same listener, which `HttpSource.admin_endpoint` declares: its
token is the admin token unless ``[daemon] admin_token`` is set.

``[sources.http]`` settings: ``listen`` (default ``"127.0.0.1:8787"``), ``token`` (required
when ``listen`` is not loopback, so ``check`` refuses a public listener without one) and
``max_body`` (default ``"1MiB"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from postbackd.events import EventRejected, parse_events
from postbackd.logs import get_logger
from postbackd.plugin import (
    AdminEndpoint,
    PluginContext,
    SettingsReader,
    SpoolUnavailable,
    Submit,
    count_rejected,
    hookimpl,
    read_mapping,
    submit_many,
)
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
KEYS = ("listen", "token", "max_body", "header_timeout", "body_timeout", "max_connections")


@dataclass(frozen=True)
class HttpSettings:
    """The ``[sources.http]`` table, read."""

    listen: str = "127.0.0.1:8787"
    token: str | None = field(default=None, repr=False)
    max_body: int = 1024 * 1024
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)


class HttpSource:
    """Listens on ``listen``; guards intake with ``token`` (required off loopback).

    ``listen`` is also what the supervisor reads to treat this source as a listener: the
    daemon is READY only once it is bound, and an address it cannot bind fails the start.
    """

    def __init__(self, settings: Mapping[str, Any], context: PluginContext) -> None:
        read = read_mapping(self.read_settings, settings, "[sources.http]")
        self.listen, self.token, self.max_body = read.listen, read.token, read.max_body
        self.limits = read.limits
        self.context = context
        self._runner: web.AppRunner | None = None
        self._submit: Submit | None = None

    @classmethod
    def read_settings(cls, reader: SettingsReader) -> HttpSettings:
        """Read ``[sources.http]``; a listener off loopback without a token is an error,
        since anyone who can reach it could submit events (and use the admin API)."""
        reader.check_keys(KEYS)
        d = HttpSettings()
        settings = HttpSettings(
            listen=reader.listen("listen", d.listen),
            token=reader.token("token"),
            max_body=reader.size("max_body", d.max_body),
            limits=ConnectionLimits(
                header_timeout=_timeout(reader, "header_timeout", d.limits.header_timeout),
                body_timeout=_timeout(reader, "body_timeout", d.limits.body_timeout),
                max_connections=reader.integer("max_connections", d.limits.max_connections),
            ),
        )
        endpoint = cls.admin_endpoint(settings)
        # a token that is blank or failed to resolve is reported at its own line
        if settings.token is None and "token" not in reader.data and not endpoint.is_loopback:
            reader.error(
                f"listens on {endpoint.host}, which is not loopback, without a token: anyone "
                'who can reach it could submit events. Set token = "${env:POSTBACKD_TOKEN}" '
                "(or listen on 127.0.0.1 behind a reverse proxy)",
                "listen",
            )
        return settings

    @classmethod
    def admin_endpoint(cls, settings: HttpSettings) -> AdminEndpoint:
        """The admin API is served on this listener (`PluginContext.admin_routes`)."""
        return AdminEndpoint(settings.listen, settings.token)

    @property
    def ready(self) -> bool:
        return self._runner is not None

    async def start(self, submit: Submit) -> None:
        self._submit = submit
        app = build_app(self.routes(), max_body=self.max_body)
        self._runner = await serve(app, self.listen, "[sources.http] listen", self.limits)
        log.info("http source listening", listen=self.listen)

    def routes(self) -> list[web.RouteDef]:
        """What this listener serves: intake, and the admin API (docs/openapi.json)."""
        return [web.post("/v1/events", self.post_events), *self.context.admin_routes]

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


def _timeout(reader: SettingsReader, key: str, default: float) -> float:
    value = reader.duration(key, default)
    if value <= 0:
        reader.error('must be more than 0s, e.g. "10s": a client must be cut off some time', key)
        return default
    return value
