"""Replay from the Requests page: retry or resend every delivery the page's filters show.

Two steps, no JavaScript needed: the Requests page links to ``/ui/requests/replay?<its
filters>&action=…``, which counts what would be replayed (a dry run) and asks; the form on
that page POSTs the same filters (with the CSRF token), and the verb runs on exactly those
filters. The count shown is the one at the time of asking: the POST acts on what matches
then, and the notice after it says how many it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from aiohttp import web

from postbackd.spool import DeliveryState, ListFilter
from postbackd.ui import views
from postbackd.ui.query import FilterError, RequestQuery
from postbackd.ui.visit import UiBackend, Visit

REPLAYS = {
    "retry": "Retry",
    "resend": "Resend",
}
"""retry: dead, failed (and pending) deliveries due again now; resend: done ones sent again."""


class Replay:
    def __init__(self, backend: UiBackend) -> None:
        self.backend = backend

    async def confirm(self, visit: Visit) -> web.Response:
        """The count of what the filters select, and the form that replays them."""
        problem, query, where, action, rerender = self._read(visit, visit.request.query)
        if problem is not None:
            return problem
        try:
            count = await self._run(action, where, rerender, dry_run=True)
        except ValueError as exc:
            return self._refuse(visit, str(exc))
        return visit.page(
            "replay.html",
            query=query,
            action=action,
            label=REPLAYS[action],
            rerender=rerender,
            count=count,
            back=query.url(),
        )

    async def run(self, visit: Visit) -> web.Response:
        problem, query, where, action, rerender = self._read(visit, visit.form)
        if problem is not None:
            return problem
        try:
            count = await self._run(action, where, rerender, dry_run=False)
        except ValueError as exc:
            return self._refuse(visit, str(exc))
        if count:
            self.backend.wake()
        notice = {"retry": "replayed-retry", "resend": "replayed-resend"}[action]
        url = query.url()
        joiner = "&" if "?" in url else "?"
        return views.redirect(f"{url}{joiner}{urlencode({'notice': notice, 'n': count})}")

    def _read(
        self, visit: Visit, values: Mapping[str, str]
    ) -> tuple[web.Response | None, RequestQuery, ListFilter, str, bool]:
        """The replay asked for, from the page's query or the confirming form: a refusal
        page when it cannot run (unknown action, no filter, a filter that does not parse)."""
        query = RequestQuery.from_query(values)
        action = values.get("action", "").strip()
        rerender = values.get("rerender", "") in ("1", "on", "true")
        where = ListFilter()
        if action not in REPLAYS:
            problem = self._refuse(visit, f"unknown replay {action!r}: retry or resend")
            return problem, query, where, action, rerender
        if not query.filtered:
            problem = self._refuse(
                visit,
                "Filter the Requests page first (a customer, trigger, order, event type or "
                "time range): a replay acts on what the filters show, never on everything.",
            )
            return problem, query, where, action, rerender
        try:
            where = query.list_filter()
        except FilterError as exc:
            return self._refuse(visit, str(exc)), query, where, action, rerender
        return None, query, where, action, rerender

    async def _run(self, action: str, where: ListFilter, rerender: bool, *, dry_run: bool) -> int:
        verbs = self.backend.spool.verbs
        if action == "resend":
            return await verbs.resend(where=where, rerender=rerender, dry_run=dry_run)
        if where.state is DeliveryState.DONE:
            raise ValueError("done deliveries are resent, not retried: choose Resend")
        return await verbs.retry(where=where, dry_run=dry_run)

    def _refuse(self, visit: Visit, message: str) -> web.Response:
        return visit.page("message.html", status=400, title="Cannot replay", message=message)
