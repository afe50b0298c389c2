"""The admin HTTP API: health, readiness, metrics, the request log, retry, render, reload,
the operator's verbs (`postbackd.api.verbs`) and the API's own description (`/v1/openapi.json`).

Served on the HTTP source's listener (it adds these routes to its own), or, with no HTTP
source, on ``[daemon] admin_listen`` — so health and metrics always exist. Every route but
/healthz and /readyz needs the admin bearer token when one is set. The web UI's routes
(`postbackd.ui`, under /ui/) are always registered and answer 404 while ``[ui] enabled`` is
false, so a reload can switch the UI on or off; the UI has its own login (a session cookie).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol, cast

from aiohttp import web

from postbackd import jsoncodec
from postbackd.api.openapi import openapi_document
from postbackd.api.verbs import AdminVerbs, delivery_id_error
from postbackd.breaker import BreakerBoard
from postbackd.events import EventRejected, parse_event
from postbackd.fleet import fleet_status
from postbackd.generation import Generation, Plugins
from postbackd.metrics import Metrics
from postbackd.samples import load_sample
from postbackd.spool import DeliveryIdError, ListFilter, Spool, TimerState, parse_state
from postbackd.templates import RenderError, render_budget
from postbackd.ui import UiRoutes
from postbackd.web import Handler, bearer_ok, json_error, json_response, unauthorized


class AdminBackend(Protocol):
    """What the admin API needs from the daemon."""

    spool: Spool
    metrics: Metrics
    breakers: BreakerBoard
    plugins: Plugins

    def current(self) -> Generation: ...

    def readiness(self) -> dict[str, Any]: ...

    def config_status(self) -> dict[str, Any]: ...

    async def reload(self, reason: str) -> dict[str, Any]: ...

    def wake(self) -> None: ...

    async def refresh_gauges(self) -> object: ...


class AdminApi:
    def __init__(self, backend: AdminBackend) -> None:
        self.backend = backend

    def routes(self) -> list[web.RouteDef]:
        guarded = self._guarded
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", guarded(self.metrics)),
            web.get("/v1/deliveries", guarded(self.list_deliveries)),
            web.get("/v1/deliveries/{id}", guarded(self.get_delivery)),
            web.post("/v1/deliveries/{id}/retry", guarded(self.retry_delivery)),
            web.get("/v1/timers", guarded(self.list_timers)),
            web.post("/v1/render", guarded(self.render)),
            web.post("/v1/reload", guarded(self.reload)),
            web.get("/v1/config", guarded(self.config)),
            *AdminVerbs(self.backend, guarded).routes(),
            web.get("/v1/openapi.json", guarded(self.openapi)),
            *UiRoutes(self.backend).routes(),
        ]

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not bearer_ok(request, self.backend.current().config.daemon.admin_token):
                return unauthorized()
            return await handler(request)

        return guarded

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        readiness = self.backend.readiness()
        return json_response(readiness, 200 if readiness["ready"] else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        await self.backend.refresh_gauges()
        return web.Response(
            body=self.backend.metrics.render(),
            headers={"Content-Type": self.backend.metrics.content_type},
        )

    async def list_timers(self, request: web.Request) -> web.Response:
        """``[[sla]]`` delay timers: ``?state=pending`` (default), fired, cancelled or all."""
        query = request.query
        state = query.get("state", "pending")
        if state not in ("pending", "fired", "cancelled", "all"):
            return json_error(400, "state must be pending, fired, cancelled or all", "state")
        try:
            limit = min(int(query.get("limit", "100")), 1000)
        except ValueError:
            return json_error(400, "limit must be a number", "limit")
        if limit < 1:
            return json_error(400, "limit must be at least 1", "limit")
        chosen = None if state == "all" else cast(TimerState, state)
        timers = await self.backend.spool.list_timers(chosen, limit)
        return json_response({"timers": [timer.as_json() for timer in timers]})

    async def list_deliveries(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            limit = min(int(query.get("limit", "50")), 1000)
            since = float(query["since"]) if "since" in query else None
            until = float(query["until"]) if "until" in query else None
        except ValueError:
            return json_error(400, "limit, since and until must be numbers", "query")
        if limit < 1:
            return json_error(400, "limit must be at least 1", "limit")
        try:
            state = None if "state" not in query else parse_state(query["state"])
        except ValueError as exc:
            return json_error(400, str(exc), "state")
        filters = ListFilter(
            state=state,
            customer=query.get("customer"),
            trigger=query.get("trigger"),
            order=query.get("order"),
            event_type=query.get("event_type"),
            since=since,
            until=until,
        )
        try:
            rows, cursor = await self.backend.spool.list_deliveries(
                filters, limit=limit, cursor=query.get("cursor")
            )
        except ValueError as exc:
            return json_error(400, str(exc), "cursor")
        return json_response({"deliveries": [r.to_dict() for r in rows], "next_cursor": cursor})

    async def get_delivery(self, request: web.Request) -> web.Response:
        try:
            delivery_id = await self.backend.spool.resolve_delivery_id(request.match_info["id"])
        except DeliveryIdError as exc:
            return delivery_id_error(exc)
        detail = await self.backend.spool.get_delivery(delivery_id)
        if detail is None:  # purged or pruned in between
            return json_error(404, f"no delivery with id {delivery_id}", "id")
        return json_response(detail.to_dict())

    async def retry_delivery(self, request: web.Request) -> web.Response:
        try:
            delivery_id = await self.backend.spool.resolve_delivery_id(request.match_info["id"])
        except DeliveryIdError as exc:
            return delivery_id_error(exc)
        changed = await self.backend.spool.verbs.retry([delivery_id])
        if not changed:
            detail = await self.backend.spool.get_delivery(delivery_id)
            if detail is None:
                return json_error(404, f"no delivery with id {delivery_id}", "id")
            return json_error(
                409,
                f"delivery {delivery_id} is {detail.summary.state}; it cannot be retried now",
                "id",
            )
        self.backend.wake()
        return json_response({"retried": delivery_id, "at": time.time()})

    async def render(self, request: web.Request) -> web.Response:
        try:
            body = jsoncodec.loads(await request.read())
        except ValueError as exc:
            return json_error(400, f"malformed JSON: {exc}")
        if not isinstance(body, dict) or not isinstance(body.get("template"), str):
            return json_error(400, "required: a string naming the template", "template")
        generation = self.backend.current()
        engine = generation.router.engine
        if not engine.has(body["template"]):
            return json_error(404, f"no template named {body['template']!r}", "template")
        try:
            raw = body.get("event") if "event" in body else load_sample(str(body.get("sample")))
            event = parse_event(raw, prefix="event")
        except EventRejected as exc:
            return json_response(exc.as_json(), 400)
        except (KeyError, ValueError) as exc:
            return json_error(400, f"give an event or a known sample type ({exc})", "sample")
        customer_id = str(body.get("customer") or event.customer)
        customer = generation.config.customers.get(customer_id)

        def render() -> Any:  # off the loop and in its time budget, like routing at intake
            with render_budget():
                return engine.render(body["template"], event, customer)

        try:
            rendered = await asyncio.to_thread(render)
        except RenderError as exc:
            return json_response(
                {
                    "error": str(exc),
                    "line": exc.line,
                    "column": exc.column,
                    "variable": exc.variable,
                },
                422,
            )
        return json_response(
            {
                "body": rendered.body.decode("utf-8", "replace"),
                "subject": rendered.subject,
                "content_type": rendered.content_type,
                "warnings": [str(w) for w in rendered.warnings],
            }
        )

    async def reload(self, request: web.Request) -> web.Response:
        result = await self.backend.reload("admin API")
        return json_response(result, 200 if result.get("ok") else 422)

    async def config(self, request: web.Request) -> web.Response:
        status = self.backend.config_status()
        status.update((await fleet_status(self.backend.spool)).to_dict())
        return json_response(status)

    async def openapi(self, request: web.Request) -> web.Response:
        """This API described (OpenAPI 3.1; `postbackd.api.openapi`, also in docs/openapi.json)."""
        return json_response(openapi_document())
