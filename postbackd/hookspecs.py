"""The plugin API: pluggy hook specifications. Hook names are part of the contract.

pluggy hooks are synchronous. Hooks that add behaviour receive a ``register`` callable and
register objects whose methods may be async; observer hooks must return quickly (start an
``asyncio`` task for slow work).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from postbackd.plugin import PROJECT

if TYPE_CHECKING:
    from postbackd.plugin import Delivery, Event, Outcome

hookspec = pluggy.HookspecMarker(PROJECT)

RegisterClass = Callable[[str, type], None]
RegisterFunction = Callable[[str, Callable[..., Any]], None]


# ---------------------------------------------------------------- registration (at start-up)


@hookspec
def postbackd_register_sources(register: RegisterClass) -> None:
    """Register event source classes: ``register("amqp", AmqpSource)``.

    Called once when plugins are loaded. A source class is built from its
    ``[sources.NAME]`` table as ``cls(settings)`` (or ``cls(settings, context=...)``) and has
    ``async start(submit)`` and ``async stop()``. A name registered twice is an error naming both
    plugins.
    """


@hookspec
def postbackd_register_deliveries(register: RegisterClass) -> None:
    """Register delivery classes: ``register("webhook", WebhookDelivery)``.

    Called once when plugins are loaded. The class is built as ``cls(settings)`` with the
    ``[deliveries.NAME]`` table (or ``{}``) and has ``validate_options(options) -> list[str]``,
    ``async deliver(delivery, options) -> Outcome`` and ``async close()``; optionally
    ``destination(options) -> str`` naming the peer for concurrency bounds and the circuit
    breaker (default: the delivery's name). A triggers's ``delivery = "NAME"`` selects it.
    """


@hookspec
def postbackd_register_template_globals(register: RegisterFunction) -> None:
    """Register functions callable in templates: ``register("money", format_money)``.

    Called when templates are compiled. Functions run inside the Jinja2 sandbox and must not
    block.
    """


@hookspec
def postbackd_register_template_filters(register: RegisterFunction) -> None:
    """Register template filters: ``register("upper_first", upper_first)``."""


# ---------------------------------------------------------------- configuration


@hookspec(firstresult=True)
def postbackd_resolve_secret(ref: str) -> str | None:
    """Resolve a custom secret reference ``${scheme:rest}`` (``ref`` is ``"scheme:rest"``).

    Called at configuration load for schemes other than env, file and credential. Return the
    secret's value, or None when this plugin does not handle the scheme; the first non-None
    answer wins. Raise ValueError with a message for a reference that is handled but missing.
    """


# ---------------------------------------------------------------- observers (at run time)


@hookspec
def postbackd_after_event_accepted(event: Event) -> None:
    """Called after an event and its deliveries are committed to the spool (not for duplicates)."""


@hookspec
def postbackd_after_delivery(delivery: Delivery, outcome: Outcome) -> None:
    """Called after every delivery attempt, whatever its outcome, once it is recorded."""


@hookspec
def postbackd_on_delivery_dead(delivery: Delivery, outcome: Outcome) -> None:
    """Called when a delivery ends ``dead``: retries exhausted or a permanent failure."""
