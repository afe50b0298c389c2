"""The Requests page (every delivery, newest first, filtered) and one delivery's four stages.

Actions are plain HTML forms (POST + CSRF token, then 303 back), so everything works without
JavaScript: retry now, hold, release, and "retry all dead deliveries of this customer".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from postbackd.events import CANONICAL_TYPES, SYSTEM_TYPES
from postbackd.spool import (
    MIN_ID_PREFIX,
    RETRYABLE,
    AmbiguousDeliveryId,
    DeliveryDetail,
    DeliveryIdError,
    DeliveryState,
    DeliverySummary,
    UnknownDeliveryId,
)
from postbackd.ui import pretty, views
from postbackd.ui.query import FilterError, RequestQuery
from postbackd.ui.visit import UiBackend, Visit

PAGE_SIZE = 50
SUGGESTIONS = 300
"""Above this many customers (or triggers) the filter offers no list: it would outweigh the
page. Any name can still be typed."""
ACTIONS = ("retry", "hold", "release")


@dataclass(frozen=True)
class LogEntry:
    """A request or response of the request log, laid out for display."""

    headers: list[tuple[str, str]]
    body: str | None
    fields: list[tuple[str, str]]


def log_entry(value: Mapping[str, Any] | None) -> LogEntry | None:
    if not value:
        return None
    fields = [
        (str(key), pretty.scalar(item))
        for key, item in value.items()
        if key not in ("headers", "body") and item is not None
    ]
    body = value.get("body")
    return LogEntry(
        headers=pretty.masked_headers(value.get("headers")),
        body=None if body is None else pretty.scalar(body),
        fields=fields,
    )


def allowed_actions(state: DeliveryState) -> list[str]:
    actions = []
    if state in RETRYABLE:
        actions.append("retry")
    if state is DeliveryState.PENDING:
        actions.append("hold")
    if state is DeliveryState.HELD:
        actions.append("release")
    return actions


def _suggestions(names: Mapping[str, object]) -> list[str]:
    return sorted(names) if len(names) <= SUGGESTIONS else []


def render_request_rows(rows: list[DeliverySummary]) -> str:
    """The table body of the Requests page alone (what `scripts/ui_bench.py` times)."""
    return views.render("_rows.html", rows=rows)


class RequestsPages:
    def __init__(self, backend: UiBackend) -> None:
        self.backend = backend

    async def list(self, visit: Visit) -> web.Response:
        query = RequestQuery.from_query(visit.request.query)
        rows: list[DeliverySummary] = []
        next_cursor: str | None = None
        error: FilterError | None = None
        try:
            filters = query.list_filter()
            rows, next_cursor = await self.backend.spool.list_deliveries(
                filters, limit=PAGE_SIZE, cursor=query.cursor or None
            )
        except FilterError as exc:
            error = exc
        config = visit.generation.config
        return visit.page(
            "requests.html",
            status=400 if error else 200,
            query=query,
            rows=rows,
            next_url=None if next_cursor is None else query.url(cursor=next_cursor),
            error=error,
            customers=_suggestions(config.customers),
            triggers=_suggestions(config.triggers),
            event_types=(*CANONICAL_TYPES, *SYSTEM_TYPES),  # alerts are deliveries too
            states=[str(state) for state in DeliveryState],
        )

    async def detail(self, visit: Visit) -> web.Response:
        given = visit.request.match_info["id"]
        try:
            delivery_id = await self.backend.spool.resolve_delivery_id(given)
        except DeliveryIdError as exc:
            return self._id_error(visit, exc)
        if delivery_id != given:  # a prefix: the delivery's own address, for links and actions
            query = visit.request.query_string
            return views.redirect(_delivery_url(delivery_id) + (f"?{query}" if query else ""))
        detail = await self.backend.spool.get_delivery(delivery_id)
        if detail is None:
            return self._id_error(visit, UnknownDeliveryId(delivery_id))
        return visit.page("delivery.html", **self._detail_context(visit, detail))

    def _id_error(self, visit: Visit, exc: DeliveryIdError) -> web.Response:
        if isinstance(exc, AmbiguousDeliveryId):
            more = " (and more: type more of the id)" if exc.more else ""
            return visit.page(
                "message.html",
                status=409,
                title="Which delivery?",
                message=f"Several delivery ids start with {exc.given}{more}:",
                links=[(_delivery_url(match), match) for match in exc.matches],
            )
        return visit.page(
            "message.html",
            status=404,
            title="No such delivery",
            message=f"There is no delivery with id {exc.given} (pruned after the retention, "
            f"erased, or never stored; an id may be shortened to {MIN_ID_PREFIX} or more "
            "characters).",
        )

    def _detail_context(self, visit: Visit, detail: DeliveryDetail) -> dict[str, Any]:
        summary = detail.summary
        trigger = visit.generation.config.triggers.get(summary.trigger)
        attempts = [
            (attempt, log_entry(attempt.request), log_entry(attempt.response))
            for attempt in reversed(detail.attempts)
        ]
        return {
            "d": summary,
            "detail": detail,
            "trigger": trigger,
            "attempts": attempts,
            "actions": allowed_actions(summary.state),
            "event_text": pretty.pretty_json(dict(detail.event)),
            "body_text": pretty.pretty_body(detail.body, detail.format),
            "live": summary.state in (DeliveryState.PENDING, DeliveryState.INFLIGHT),
        }

    async def action(self, visit: Visit) -> web.Response:
        delivery_id = visit.request.match_info["id"]
        action = visit.request.match_info["action"]
        if action not in ACTIONS:
            return visit.page("message.html", status=404, title="Unknown action", message=action)
        spool = self.backend.spool
        try:
            delivery_id = await spool.resolve_delivery_id(delivery_id)
        except DeliveryIdError as exc:
            return self._id_error(visit, exc)
        if action == "retry":
            changed = await spool.verbs.retry([delivery_id])
        elif action == "hold":
            changed = await spool.verbs.hold([delivery_id], reason="held from the web UI")
        else:
            changed = await spool.verbs.release([delivery_id])
        if changed:
            self.backend.wake()
        notice = {"retry": "retried", "hold": "held", "release": "released"}[action]
        target = _delivery_url(delivery_id)
        return views.redirect(f"{target}?notice={notice if changed else 'unchanged'}")

    async def retry_dead(self, visit: Visit) -> web.Response:
        customer = visit.form.get("customer", "").strip()
        if not customer:
            return visit.page(
                "message.html",
                status=400,
                title="Which customer?",
                message="Filter the Requests page by a customer first, then retry its dead "
                "deliveries.",
            )
        count = await self.backend.spool.verbs.retry(state="dead", customer=customer)
        if count:
            self.backend.wake()
        params = urlencode({"customer": customer, "notice": "retried-dead", "n": count})
        return views.redirect(f"/ui/requests?{params}")


def _delivery_url(delivery_id: str) -> str:
    return f"/ui/requests/{quote(delivery_id, safe='')}"
