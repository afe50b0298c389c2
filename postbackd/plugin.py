"""The public surface a postbackd plugin imports — this module and nothing else.

A delivery plugin registers a class with ``postbackd_register_deliveries``; the daemon builds
one instance per name with the ``[deliveries.NAME]`` table (or ``{}``) and calls
``validate_options`` for every trigger that names it, ``deliver`` for each attempt, and
``close`` at shutdown. A source plugin registers a class with ``postbackd_register_sources``;
it is built from its ``[sources.NAME]`` table and runs between ``start(submit)`` and ``stop()``.

A class whose ``__init__`` accepts a ``context`` keyword also receives a `PluginContext`. A
class may read its table with a ``read_settings(reader)`` classmethod: the loader calls it with
a `SettingsReader` over the table, so ``postbackd check`` and every reload report each problem
at its key's file:line, and ``__init__`` reads the mapping it is given with the same method
through `read_mapping`. A source that serves the admin API on its own listener declares it
with ``admin_endpoint(settings) -> AdminEndpoint | None``.
`parse_event` (a decoded envelope → `Event`, or `EventRejected` naming the field) and
`parse_duration` (``"5s"`` → 5.0) let a plugin check its input the way postbackd does.

`API_VERSION` is the version of this surface and of the hooks in `postbackd.hookspecs`. It
goes up only when something a plugin relies on changes incompatibly (a hook or a field
removed or changed); additions keep it. A plugin may declare the version it was written for
as a module attribute ``POSTBACKD_API_VERSION``: a plugin written for another version is
refused at start-up with its name, instead of failing at its first event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import pluggy

from postbackd import __version__
from postbackd.config import AdminEndpoint, Config, SettingsReader, read_mapping
from postbackd.events import Event, EventRejected, parse_event
from postbackd.units import parse_duration

API_VERSION = 1
PROJECT = "postbackd"

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a hook implementation: ``@hookimpl`` above ``def postbackd_register_deliveries``."""


class OutcomeKind(StrEnum):
    OK = "ok"
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True)
class Delivery:
    """One postback as a delivery plugin sees it: the payload fixed at routing time.

    A shipment file (a trigger with ``batch``) is one `Delivery` too: `file_name` is the name
    to store it under (None for an ordinary postback), `body` the whole file, `id` the file's
    id (the same at every attempt), and `event_id`/`order_id` are empty: the file carries
    many events. A plugin that cannot store files returns ``Outcome.fail`` for one.
    """

    id: str
    event_id: str
    event_type: str
    customer: str
    trigger: str
    attempt: int
    format: str
    content_type: str
    subject: str | None
    body: bytes
    order_id: str | None = None
    file_name: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to. Build it with `ok`, `retry` or `fail`.

    ``request`` and ``response`` are for the request log (secrets already masked):
    ``request`` = {"method", "url", "headers", ...}; ``response`` = {"status", "headers",
    "body", ...}. ``status`` is the protocol's code (HTTP status, SMTP reply code).
    """

    kind: OutcomeKind
    error: str | None = None
    detail: str | None = None
    retry_after: float | None = None
    status: int | None = None
    request: Mapping[str, Any] | None = field(default=None, compare=False)
    response: Mapping[str, Any] | None = field(default=None, compare=False)
    breaker: bool = True  # whether a failure counts against the destination's circuit breaker

    @classmethod
    def ok(cls, detail: str | None = None, **extra: Any) -> Outcome:
        """The attempt succeeded: the delivery is done."""
        return cls(OutcomeKind.OK, detail=detail, **extra)

    @classmethod
    def retry(cls, error: str, after: float | None = None, **extra: Any) -> Outcome:
        """A temporary failure: try again at the next step of the schedule (or after `after`)."""
        return cls(OutcomeKind.RETRY, error=error, retry_after=after, **extra)

    @classmethod
    def fail(cls, error: str, **extra: Any) -> Outcome:
        """A permanent failure: the delivery is dead at once, no more attempts."""
        return cls(OutcomeKind.FAIL, error=error, **extra)

    @property
    def succeeded(self) -> bool:
        return self.kind is OutcomeKind.OK


@dataclass(frozen=True)
class SubmitResult:
    """What `submit` answers once an event is durable: new, or a duplicate of a known id."""

    event_id: str
    duplicate: bool = False
    deliveries: int = 0


Submit = Callable[[Event], Awaitable[SubmitResult]]
"""`await submit(event)` returns once the event and its deliveries are committed to disk.

It raises `EventRejected` for an invalid event (do not retry it) and `SpoolUnavailable` when
it cannot store now (retry later; do not acknowledge upstream).
"""


async def submit_many(submit: Submit, events: Sequence[Event]) -> list[SubmitResult]:
    """Submit a batch of events (a request's array, a file's lines): one result per event.

    The daemon's `submit` commits the whole batch in one transaction — every event is stored
    or, if it raises, none is — which costs far less than one commit per event. A stand-in
    submit without that ability gets the events one by one.
    """
    many = getattr(submit, "many", None)
    if many is not None:
        results: list[SubmitResult] = await many(events)
        return results
    return [await submit(event) for event in events]


def count_rejected(submit: Submit | None, reason: str = "invalid", count: int = 1) -> None:
    """Count input a source refused, in ``postbackd_events_rejected_total{source,reason}``.

    The daemon's `submit` carries a ``rejected(reason, count)`` method for this; a stand-in
    submit in a plugin's own tests may not, and then nothing is counted. `reason` is one of
    "invalid", "unauthorized", "too_large".
    """
    rejected = getattr(submit, "rejected", None)
    if rejected is not None:
        rejected(reason, count)


class SpoolUnavailable(RuntimeError):
    """The event could not be stored now (disk full, spool unwritable, shutting down)."""


@dataclass(frozen=True)
class PluginContext:
    """What the daemon offers a plugin.

    ``config()`` returns the configuration in force *now* (it changes on reload).
    ``admin_routes`` are the daemon's admin API routes (aiohttp route definitions): a source
    that listens for HTTP serves them on its listener, so there is one port to operate, and
    says so with ``admin_endpoint(settings)`` (see `AdminEndpoint`) so that the daemon does not
    open ``[daemon] admin_listen`` as well.
    """

    config: Callable[[], Config]
    admin_routes: Sequence[Any] = ()
    version: str = __version__


@dataclass(frozen=True)
class ConnectionCheck:
    """One line of `postbackd check --connect`: a step towards a destination, passed or not.

    A delivery plugin may offer ``async check_connections(triggers) -> list[ConnectionCheck]``
    for the triggers that use it (`postbackd.config.Trigger`: name and current options): resolve,
    connect, log in — whatever shows an admin that postbacks can get through.
    """

    ok: bool
    text: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.text}"


class DeliveryPlugin(Protocol):
    """What a delivery class provides. Optional: ``read_settings(reader)`` (a classmethod that
    reads the ``[deliveries.NAME]`` table; see `SettingsReader`), ``destination(options) ->
    str`` (the unit of concurrency and circuit breaking), ``async check_connections(triggers)``
    (see `ConnectionCheck`) and ``test_summary(outcome) -> str | None`` (what `postbackd test`
    prints instead of the request and response, when the plugin has a better account)."""

    def validate_options(self, options: Mapping[str, Any]) -> list[str]: ...

    async def deliver(self, delivery: Delivery, options: Mapping[str, Any]) -> Outcome: ...

    async def close(self) -> None: ...


class SourcePlugin(Protocol):
    """What a source class provides. Optional: ``ready`` (a bool attribute or property),
    ``read_settings(reader)`` (a classmethod that reads the ``[sources.NAME]`` table; see
    `SettingsReader`) and ``admin_endpoint(settings) -> AdminEndpoint | None`` (a classmethod:
    the listener on which it serves `PluginContext.admin_routes`, given what ``read_settings``
    returned).

    ``start`` returns once the source runs. It may return an awaitable — typically the
    `asyncio.Task` of its main loop — which postbackd watches: if it ends before ``stop``
    (an exception, or simply returning), the source has crashed and is stopped and started
    again with backoff, like a ``start`` that raised.
    """

    async def start(self, submit: Submit) -> Awaitable[object] | None: ...

    async def stop(self) -> None: ...


RegisterSource = Callable[[str, type], None]
"""The ``register`` of `postbackd_register_sources`: ``register("mis-poll", MisPollSource)``."""
RegisterDelivery = Callable[[str, type], None]
"""The ``register`` of `postbackd_register_deliveries`: ``register("chat", ChatDelivery)``."""
RegisterFunction = Callable[[str, Callable[..., Any]], None]
"""The ``register`` of the template hooks: ``register("money", money)``."""

__all__ = [
    "API_VERSION",
    "AdminEndpoint",
    "ConnectionCheck",
    "Delivery",
    "DeliveryPlugin",
    "Event",
    "EventRejected",
    "Outcome",
    "OutcomeKind",
    "PluginContext",
    "RegisterDelivery",
    "RegisterFunction",
    "RegisterSource",
    "SettingsReader",
    "SourcePlugin",
    "SpoolUnavailable",
    "Submit",
    "SubmitResult",
    "count_rejected",
    "hookimpl",
    "parse_duration",
    "parse_event",
    "read_mapping",
    "submit_many",
]
