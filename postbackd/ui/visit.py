"""What a UI handler gets: the request, the configuration in force, the CSRF token, the form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from postbackd.generation import Generation
from postbackd.ui import views

if TYPE_CHECKING:
    from postbackd.breaker import BreakerBoard
    from postbackd.generation import Plugins
    from postbackd.spool import Spool


class UiBackend(Protocol):
    """What the UI needs from the daemon."""

    spool: Spool
    breakers: BreakerBoard
    plugins: Plugins

    def current(self) -> Generation: ...

    def config_status(self) -> dict[str, Any]: ...

    def wake(self) -> None: ...


@dataclass(frozen=True)
class Visit:
    """One authorised request. `form` holds the POST fields (already CSRF-checked)."""

    request: web.Request
    generation: Generation
    csrf: str
    login: bool  # an admin token is set: the page offers "Log out"
    form: Mapping[str, str] = field(default_factory=dict)

    def page(self, template: str, status: int = 200, **context: Any) -> web.Response:
        return views.html(views.render(template, visit=self, **context), status)

    def notice(self) -> str:
        """The message a redirect after an action asked to show (from a fixed list)."""
        return NOTICES.get(self.request.query.get("notice", ""), "").format(
            n=_count(self.request.query.get("n", ""))
        )


NOTICES = {
    "retried": "Retry scheduled: the delivery is due now.",
    "held": "The delivery is held: it will not be attempted until released.",
    "released": "Released: the delivery is due now.",
    "unchanged": "Nothing changed: the delivery is no longer in a state that allows this.",
    "retried-dead": "Dead deliveries due again now: {n}.",
    "replayed-retry": "Retried: {n} deliveries due again now.",
    "replayed-resend": "Resent: {n} delivered postbacks are being sent again.",
}


def _count(text: str) -> int:
    return int(text) if text.isdigit() else 0
