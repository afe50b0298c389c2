"""The operator's verbs over HTTP: hold, release, retry, resend and purge by id or by filter,
backfill, and erase — what `postbackd queue` and `postbackd erase` do, for scripts and the UI.

Kept apart from `postbackd.api.routes` (the read routes, render, reload) so that module stays about
the daemon's state. Every route here changes the spool, answers JSON and says what it did; a
filter route with ``"dry_run": true`` only counts. The request bodies are read against
`BODY_FIELDS`, the same table the OpenAPI document (`postbackd.api.openapi`) describes them from,
so what is accepted and what is documented cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from postbackd import jsoncodec
from postbackd.backfill import BackfillRefused, backfill
from postbackd.commands.spool_access import parse_since
from postbackd.generation import Generation
from postbackd.logs import get_logger
from postbackd.spool import AmbiguousDeliveryId, DeliveryIdError, ListFilter, Spool, parse_state
from postbackd.web import Handler, json_error, json_response

log = get_logger("postbackd.api")

MAX_IDS = 10_000


@dataclass(frozen=True, slots=True)
class BodyField:
    """One key a verb's JSON body may have: its JSON type and what it means (for the docs)."""

    name: str
    kind: str  # "string", "boolean", "time" (epoch seconds, a duration back, or ISO time), "ids"
    description: str


FILTERS = (
    BodyField("customer", "string", "only this customer's deliveries"),
    BodyField("trigger", "string", "only this trigger's deliveries"),
    BodyField("order", "string", "only deliveries of this order id"),
    BodyField("event_type", "string", "only this event type (e.g. order.shipped)"),
    BodyField("destination", "string", 'only this destination, as stored ("https://host:443")'),
    BodyField("since", "time", "created at or after this time"),
    BodyField("until", "time", "created before this time"),
)
IDS = BodyField("ids", "ids", "delivery ids (or prefixes of 4+ characters)")
STATE = BodyField("state", "string", "only deliveries in this state")
ALL = BodyField("all", "boolean", "every delivery the verb may touch (no other selector)")
DRY_RUN = BodyField("dry_run", "boolean", "count what would change; change nothing")
RERENDER = BodyField("rerender", "boolean", "render with the current template, not as sent")
REASON = BodyField("reason", "string", "why they are held (shown in the request log)")

BODY_FIELDS: dict[str, tuple[BodyField, ...]] = {
    "retry": (IDS, STATE, *FILTERS, ALL, DRY_RUN),
    "resend": (IDS, *FILTERS, RERENDER, DRY_RUN),
    "hold": (IDS, *FILTERS, ALL, REASON, DRY_RUN),
    "release": (IDS, *FILTERS, ALL, DRY_RUN),
    "purge": (IDS, STATE, BodyField("customer", "string", "only this customer's"), DRY_RUN),
    "backfill": (
        BodyField("trigger", "string", "the trigger to backfill (required)"),
        BodyField("since", "time", "events received at or after this time (required)"),
        BodyField("until", "time", "events received before this time"),
        DRY_RUN,
    ),
    "erase": (BodyField("order", "string", "the order id to erase (required)"),),
    "resend_one": (RERENDER,),
    "hold_one": (REASON,),
    "release_one": (),
}
"""The keys each verb's body may have; anything else is refused with a 400 naming it."""
REQUIRED = {"backfill": ("trigger", "since"), "erase": ("order",)}
SINGLE_ACTIONS = ("hold", "release", "resend")
"""What `POST /v1/deliveries/{id}/{action}` does here (retry by id is `postbackd.api.routes`'s)."""


class BadBody(ValueError):
    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


class VerbBackend(Protocol):
    """What the verbs need: the spool, the current generation (its router), and a way to wake
    the dispatcher."""

    spool: Spool

    def current(self) -> Generation: ...

    def wake(self) -> None: ...


def delivery_id_error(exc: DeliveryIdError) -> web.Response:
    """404 for an id (or prefix) of no delivery; 409 for a prefix of several, with `matches`
    (and `more` when not all of them are listed)."""
    if isinstance(exc, AmbiguousDeliveryId):
        body = {"error": exc.message, "field": "id", "matches": list(exc.matches), "more": exc.more}
        return json_response(body, 409)
    return json_error(404, exc.message, "id")


class AdminVerbs:
    """The routes; `guard` wraps each handler in the admin API's bearer check."""

    def __init__(self, backend: VerbBackend, guard: Callable[[Handler], Handler]) -> None:
        self.backend = backend
        self.guard = guard

    def routes(self) -> list[web.RouteDef]:
        g = self.guard
        return [
            web.post("/v1/deliveries/retry", g(self._by_filter("retry"))),
            web.post("/v1/deliveries/resend", g(self._by_filter("resend"))),
            web.post("/v1/deliveries/hold", g(self._by_filter("hold"))),
            web.post("/v1/deliveries/release", g(self._by_filter("release"))),
            web.post("/v1/deliveries/purge", g(self._by_filter("purge"))),
            *(
                web.post(f"/v1/deliveries/{{id}}/{action}", g(self._one(action)))
                for action in SINGLE_ACTIONS
            ),
            web.post("/v1/backfill", g(self.backfill)),
            web.post("/v1/erase", g(self.erase)),
        ]

    # ------------------------------------------------------------------ by filter

    def _by_filter(self, action: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                body = await read_body(request, action)
                ids = await self._ids(body)
                where = filters_of(body)
                if ids is None and where == ListFilter() and not selects(body):
                    raise BadBody(
                        "say which deliveries: ids, a filter (customer, trigger, order, "
                        'event_type, destination, since, until, state) or "all": true',
                        None,
                    )
                count = await self._run(action, ids, where, body)
            except BadBody as exc:
                return json_error(400, str(exc), exc.field)
            except DeliveryIdError as exc:
                return json_error(404, exc.message, "ids")
            except ValueError as exc:  # a state the verb cannot act on
                return json_error(400, str(exc), "state")
            dry_run = bool(body.get("dry_run"))
            if count and not dry_run:
                self.backend.wake()
                log.info("operator verb", action=action, count=count, via="admin API")
            return json_response({"action": action, "count": count, "dry_run": dry_run})

        return handler

    async def _run(
        self, action: str, ids: list[str] | None, where: ListFilter, body: Mapping[str, Any]
    ) -> int:
        verbs = self.backend.spool.verbs
        dry_run = bool(body.get("dry_run"))
        state = body.get("state")
        if action == "retry":
            return int(await verbs.retry(ids, state=state, where=where, dry_run=dry_run))
        if action == "resend":
            rerender = bool(body.get("rerender"))
            return int(await verbs.resend(ids, where=where, rerender=rerender, dry_run=dry_run))
        if action == "hold":
            reason = str(body.get("reason") or "held by operator")
            return int(await verbs.hold(ids, where=where, reason=reason, dry_run=dry_run))
        if action == "release":
            return int(await verbs.release(ids, where=where, dry_run=dry_run))
        customer = where.customer
        return int(await verbs.purge(ids, state=state, customer=customer, dry_run=dry_run))

    async def _ids(self, body: Mapping[str, Any]) -> list[str] | None:
        given = body.get("ids")
        if given is None:
            return None
        resolved = [await self.backend.spool.resolve_delivery_id(one) for one in given]
        return list(dict.fromkeys(resolved))

    # ------------------------------------------------------------------ one delivery

    def _one(self, action: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                body = await read_body(request, f"{action}_one")
            except BadBody as exc:
                return json_error(400, str(exc), exc.field)
            spool = self.backend.spool
            try:
                delivery_id = await spool.resolve_delivery_id(request.match_info["id"])
            except DeliveryIdError as exc:
                return delivery_id_error(exc)
            if action == "hold":
                reason = str(body.get("reason") or "held by operator")
                changed = await spool.verbs.hold([delivery_id], reason=reason)
            elif action == "release":
                changed = await spool.verbs.release([delivery_id])
            else:
                changed = await spool.verbs.resend(
                    [delivery_id], rerender=bool(body.get("rerender"))
                )
            done = {"hold": "held", "release": "released", "resend": "resent"}[action]
            if not changed:
                detail = await spool.get_delivery(delivery_id)
                if detail is None:
                    return json_error(404, f"no delivery with id {delivery_id}", "id")
                allowed = {"hold": "pending", "release": "held", "resend": "done"}[action]
                return json_error(
                    409,
                    f"delivery {delivery_id} is {detail.summary.state}; only a {allowed} "
                    f"delivery can be {done}",
                    "id",
                )
            self.backend.wake()
            log.info("operator verb", action=action, delivery_id=delivery_id, via="admin API")
            return json_response({done: delivery_id, "at": time.time()})

        return handler

    # ------------------------------------------------------------------ backfill, erase

    async def backfill(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await read_body(request, "backfill")
        except BadBody as exc:
            return json_error(400, str(exc), exc.field)
        try:
            result = await backfill(
                self.backend.spool,
                self.backend.current().router,
                body["trigger"],
                since=body["since"],
                until=body.get("until"),
                dry_run=bool(body.get("dry_run")),
            )
        except BackfillRefused as exc:
            status = 404 if exc.unknown else 400 if exc.field == "until" else 409
            return json_error(status, str(exc), exc.field)
        if result.added and not result.dry_run:
            self.backend.wake()
        return json_response(result.to_dict())

    async def erase(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await read_body(request, "erase")
        except BadBody as exc:
            return json_error(400, str(exc), exc.field)
        order = body["order"]
        if not order.strip():
            return json_error(400, "order must not be empty", "order")
        erased = await self.backend.spool.verbs.erase_order(order)
        log.info("order erased", events=erased.events, deliveries=erased.deliveries)
        return json_response(
            {
                "order": order,
                "events": erased.events,
                "deliveries": erased.deliveries,
                "attempts": erased.attempts,
            }
        )


# ---------------------------------------------------------------------- reading a body

FILTER_NAMES = tuple(field.name for field in FILTERS)


async def read_body(request: web.Request, verb: str) -> dict[str, Any]:
    """The JSON object a verb was sent (an empty body is ``{}``), each key checked against
    `BODY_FIELDS`; times turned into epoch seconds. BadBody names the key at fault."""
    raw = await request.read()
    if not raw.strip():
        body: Any = {}
    else:
        try:
            body = jsoncodec.loads(raw)
        except ValueError as exc:
            raise BadBody(f"malformed JSON: {exc}", "body") from None
    if not isinstance(body, dict):
        raise BadBody("the body must be a JSON object", "body")
    fields = {field.name: field for field in BODY_FIELDS.get(verb, ())}
    checked: dict[str, Any] = {}
    for key, value in body.items():
        field = fields.get(key)
        if field is None:
            known = ", ".join(fields) or "none"
            raise BadBody(f"unknown key {key!r} (this route takes: {known})", key)
        checked[key] = _checked(field, value)
    for key in REQUIRED.get(verb, ()):
        if key not in checked:
            raise BadBody(f"{key} is required", key)
    return checked


def _checked(field: BodyField, value: Any) -> Any:
    name = field.name
    if field.kind == "boolean":
        if not isinstance(value, bool):
            raise BadBody(f"{name} must be true or false", name)
        return value
    if field.kind == "string":
        if not isinstance(value, str) or not value or len(value) > 1000:
            raise BadBody(f"{name} must be a non-empty string (at most 1000 characters)", name)
        if name == "state":
            try:
                parse_state(value)
            except ValueError as exc:
                raise BadBody(str(exc), name) from None
        return value
    if field.kind == "time":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise BadBody(f"{name} must be epoch seconds, a duration or an ISO time", name)
        if isinstance(value, str):
            try:
                return parse_since(value, time.time())
            except ValueError as exc:
                raise BadBody(f"{name}: {exc}", name) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise BadBody(f"{name} must be a finite number", name)
        return float(value)
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_IDS
        or not all(isinstance(one, str) and 0 < len(one) <= 100 for one in value)
    ):
        raise BadBody(f"{name} must be a list of 1 to {MAX_IDS} delivery ids", name)
    return value


def filters_of(body: Mapping[str, Any]) -> ListFilter:
    return ListFilter(**{name: body[name] for name in FILTER_NAMES if name in body})


def selects(body: Mapping[str, Any]) -> bool:
    """Whether a body names deliveries beyond the filters: a state, or ``"all": true``."""
    return bool(body.get("all")) or "state" in body
