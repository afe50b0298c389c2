"""The Requests page's filters as they live in the URL, so a filtered view can be shared.

``/ui/requests?customer=acme&state=dead&since=2h`` — every filter is a query parameter and
an empty one is left out. Times are written as an age (``2h``, ``30m``, ``7d``: that long ago)
or as an ISO date/time, read as UTC unless it carries an offset.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from urllib.parse import urlencode

from postbackd.events import canonical_type
from postbackd.spool import ListFilter, parse_state
from postbackd.units import parse_duration

BASE = "/ui/requests"


class FilterError(ValueError):
    """A filter value the page cannot use; `field` names the form field to point at."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class RequestQuery:
    customer: str = ""
    trigger: str = ""
    event_type: str = ""
    state: str = ""
    order: str = ""
    since: str = ""
    until: str = ""
    cursor: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> RequestQuery:
        values = {f.name: query.get(f.name, "").strip()[:200] for f in fields(cls)}
        return cls(**values)

    @property
    def filtered(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name != "cursor")

    def list_filter(self, now: float | None = None) -> ListFilter:
        """The spool filter these values mean; raises FilterError naming the bad field."""
        now = time.time() if now is None else now
        state = None
        if self.state:
            try:
                state = parse_state(self.state)
            except ValueError as exc:
                raise FilterError("state", str(exc)) from None
        if self.cursor and not self.cursor.isdigit():
            raise FilterError("cursor", "this page link is broken: start again from the newest")
        since = parse_time("since", self.since, now)
        until = parse_time("until", self.until, now)
        if since is not None and until is not None and since >= until:
            raise FilterError("until", "the end of the time range is not after its start")
        return ListFilter(
            state=state,
            customer=self.customer or None,
            trigger=self.trigger or None,
            order=self.order or None,
            event_type=canonical_type(self.event_type) if self.event_type else None,
            since=since,
            until=until,
        )

    def url(self, **changes: str) -> str:
        """This view's URL with `changes` applied (a cursor is dropped unless given)."""
        changed = replace(self, **{"cursor": "", **changes})
        params = [(f.name, getattr(changed, f.name)) for f in fields(changed)]
        query = urlencode([(name, value) for name, value in params if value])
        return f"{BASE}?{query}" if query else BASE


def parse_time(field: str, text: str, now: float) -> float | None:
    """An age (``2h``: that long before `now`) or an ISO date/time (UTC unless offset)."""
    if not text:
        return None
    if text[0].isdigit() and text[-1].isalpha() and "-" not in text:
        try:
            return now - parse_duration(text)
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T").replace("z", "Z"))
    except ValueError:
        raise FilterError(
            field,
            f"{field}: cannot read {text!r}; write an age such as 2h or 7d, "
            "or a date/time such as 2026-05-01 or 2026-05-01T14:30 (UTC)",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
