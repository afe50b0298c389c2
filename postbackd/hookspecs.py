"""The plugin API: pluggy hook specifications. Hook names are part of the contract.

pluggy calls hooks synchronously, so **no hook may be** ``async def`` (one that is is refused at
start-up). Hooks that add behaviour receive a ``register`` callable and register classes or
functions; the *objects* registered carry the async methods (``deliver``, ``start``, ``stop``,
``close``). Observer hooks run on the event loop: return quickly, and hand slow work to a task.

The hooks are grouped by when they are called:

1. start-up — the registration hooks, called once when the plugins are loaded;
2. configuration — called at every load of ``conf.d`` (start-up, reload, ``postbackd check``);
3. intake — called as events come in;
4. delivery — called as attempts end.

Every hook is optional. A hook implementation whose name matches none below is an error at
start-up naming the plugin and the hook (pluggy's ``check_pending``), so a typo never fails
silently. `postbackd.plugin.API_VERSION` versions this module together with `postbackd.plugin`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from postbackd.plugin import (
    PROJECT,
    RegisterDelivery,
    RegisterFunction,
    RegisterSource,
)

if TYPE_CHECKING:
    from postbackd.plugin import Delivery, Event, Outcome

hookspec = pluggy.HookspecMarker(PROJECT)

__all__ = [
    "RegisterDelivery",
    "RegisterFunction",
    "RegisterSource",
    "hook_names",
]


def hook_names() -> tuple[str, ...]:
    """The names of every hook postbackd defines, in the order of this module."""
    return tuple(name for name, value in globals().items() if hasattr(value, f"{PROJECT}_spec"))


# ---------------------------------------------------------------- 1. start-up: registration


@hookspec
def postbackd_register_sources(register: RegisterSource) -> None:
    """Register event source classes.

    When: once, when the plugins are loaded (daemon start-up, every CLI command).

    Arguments:
        register: ``register(name, cls)`` — ``register("mis-poll", MisPollSource)``. A
            ``[sources.NAME]`` table in ``conf.d`` runs the class registered under NAME. A
            name registered by two plugins is an error naming both.

    The class is built as ``cls(settings)``, or ``cls(settings, context=PluginContext)`` when
    its ``__init__`` takes ``context``; ``settings`` is the ``[sources.NAME]`` table as a dict.
    Raise ValueError there for bad settings (it stops start-up with the source's name). It
    provides ``async start(submit)`` — return once running; it may return an awaitable (the
    task of its main loop) that postbackd watches and restarts on a crash — and
    ``async stop()``, and optionally ``ready`` (bool) for ``/readyz`` and
    ``async reconfigure(settings) -> bool`` (True: new settings applied in place on reload,
    without a restart). A source acknowledges its input upstream only after
    ``await submit(event)`` returned.

    Returns: nothing. Must not be async.
    """


@hookspec
def postbackd_register_deliveries(register: RegisterDelivery) -> None:
    """Register delivery classes.

    When: once, when the plugins are loaded.

    Arguments:
        register: ``register(name, cls)`` — ``register("chat", ChatDelivery)``. A trigger's
            ``delivery = "NAME"`` selects it. A name registered by two plugins is an error
            naming both.

    One instance per name is built as ``cls(settings)`` (or with ``context=``) from the
    ``[deliveries.NAME]`` table, or ``{}``; it is rebuilt when that table changes on reload.
    It provides ``validate_options(options) -> list[str]`` (called for every trigger that
    names it at every configuration load; each string is an error shown at the trigger's
    file:line), ``async deliver(delivery, options) -> Outcome`` (each attempt; an exception
    counts as ``Outcome.retry`` with its text; an attempt is cut after the ``timeout`` option
    plus 5 s, or 60 s) and ``async close()`` (at shutdown); optionally
    ``destination(options) -> str`` naming the peer for concurrency bounds and the circuit
    breaker (default: one destination per delivery name).

    Returns: nothing. Must not be async.
    """


@hookspec
def postbackd_register_template_globals(register: RegisterFunction) -> None:
    """Register functions callable in templates.

    When: once, when the plugins are loaded; the functions are installed in every template
    environment built after that (each configuration load).

    Arguments:
        register: ``register(name, function)`` — ``register("country_name", country_name)``
            makes ``{{ country_name(shipTo.country) }}`` work. A name registered twice is an
            error naming both plugins.

    The functions run inside the Jinja2 sandbox while a postback is rendered, on the event
    loop: they must be quick and must not block or do I/O. What they return is escaped for
    the template's format like any other value; an exception is a render error of that
    delivery (it ends ``failed``, with the message in the request log).

    Returns: nothing. Must not be async, nor may the registered functions be.
    """


@hookspec
def postbackd_register_template_filters(register: RegisterFunction) -> None:
    """Register template filters.

    When: once, when the plugins are loaded, like `postbackd_register_template_globals`.

    Arguments:
        register: ``register(name, function)`` — ``register("money", money)`` makes
            ``{{ total | money("EUR") }}`` call ``money(total, "EUR")``. The escaping filters
            (``raw``, ``tojson``, ``e``, ``escape``) cannot be replaced.

    The same rules as for template globals apply: quick, no I/O, output escaped per format.

    Returns: nothing. Must not be async, nor may the registered functions be.
    """


# ---------------------------------------------------------------- 2. configuration


@hookspec(firstresult=True)
def postbackd_resolve_secret(ref: str) -> str | None:
    """Resolve a custom secret reference ``${scheme:rest}`` in a configuration value.

    When: at every configuration load (start-up, reload, ``postbackd check``) for each
    reference whose scheme is not ``env``, ``file`` or ``credential``. It runs on a worker
    thread, not the event loop: a short blocking call (a vault client) is fine.

    Arguments:
        ref: the reference without ``${`` and ``}``, e.g. ``"vault:psp/acme#secret"``.

    Returns: the secret's value, or None when this plugin does not handle the scheme; the
    first non-None answer wins. Raise ValueError with a message for a reference that is
    handled but cannot be resolved: it is reported at the value's file:line, never with the
    value. Must not be async.
    """


# ---------------------------------------------------------------- 3. intake (at run time)


@hookspec
def postbackd_after_event_accepted(event: Event) -> None:
    """Observe an accepted event (alerting, audit, metrics of your own).

    When: on the event loop, right after an event and all its deliveries are committed to the
    spool and before the source acknowledges it; not for a duplicate event id.

    Arguments:
        event: the validated `Event` (id, type, customer, time, data).

    Returns: nothing. Must not be async and must not block: start an asyncio task for slow
    work. An exception is logged with the hook's name and ignored; the event stays accepted.
    """


# ---------------------------------------------------------------- 4. delivery (at run time)


@hookspec
def postbackd_after_delivery(delivery: Delivery, outcome: Outcome) -> None:
    """Observe every delivery attempt, whatever its outcome.

    When: on the event loop, after the attempt is recorded in the request log.

    Arguments:
        delivery: the `Delivery` attempted (``attempt`` is this attempt's number, from 1).
        outcome: its `Outcome` (``kind`` ok/retry/fail, ``error``, ``status``, ...).

    Returns: nothing. Must not be async and must not block. An exception is logged with the
    hook's name and ignored.
    """


@hookspec
def postbackd_on_delivery_dead(delivery: Delivery, outcome: Outcome) -> None:
    """Observe a delivery that ended ``dead``: retries exhausted or a permanent failure.

    When: on the event loop, after `postbackd_after_delivery` for the same attempt.

    Arguments:
        delivery: the `Delivery` whose last attempt this was.
        outcome: the `Outcome` of that attempt.

    Returns: nothing. Must not be async and must not block (page someone from a task). An
    exception is logged with the hook's name and ignored.
    """
