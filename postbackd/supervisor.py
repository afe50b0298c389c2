"""Runs the configured sources and the admin listener; applies source changes on reload.

Only what changed is rebuilt: a source whose ``[sources.NAME]`` table is unchanged keeps
running (its listener keeps serving) across a reload; a changed one is stopped and started
with its new settings. Unless a source serves the admin API on its own listener (it declares
an `AdminEndpoint`), the admin API listens on ``[daemon] admin_listen``, so health and metrics
always exist.

Sources are supervised: one whose ``start`` raises, or whose watched task (what ``start``
returned) dies, is stopped, reported not ready, counted, and started again with backoff —
the rest of the daemon goes on.

Listeners are the exception at start-up. A source with a ``listen`` attribute (the HTTP
source) and the admin listener are waited for: `apply` returns only once they are bound, so
READY means "intake and the admin API answer". One that cannot bind its address at start-up
fails the start (ListenerUnavailable, with the address and the kernel's reason): a service
that shows as running with no intake is worse than one that fails loudly. A reload checks
new listen addresses before anything is swapped (`listener_problems`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from postbackd.config import Config
from postbackd.intake import Intake
from postbackd.logs import get_logger
from postbackd.metrics import Metrics
from postbackd.plugin import PluginContext
from postbackd.plugins import PluginError, PluginHost, instantiate
from postbackd.web import (
    ConnectionLimits,
    ListenerUnavailable,
    build_app,
    probe_listen,
    same_listen,
    serve,
)

log = get_logger("postbackd.sources")

RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
STABLE_AFTER = 60.0  # a source that ran this long before crashing starts the backoff afresh


@dataclass
class _Running:
    settings: Mapping[str, Any]
    instance: Any  # None when no plugin could be built; `error` says why
    started: bool = False
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    watched: asyncio.Future[Any] | None = field(default=None, repr=False)
    # The outcome of the first `start`: None once started, else what it raised.
    first_start: asyncio.Future[Exception | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future(), repr=False
    )

    @property
    def listen(self) -> str | None:
        """The address this source listens on, when it is a listener."""
        listen = getattr(self.instance, "listen", None)
        return str(listen) if listen else None


class SourceSet:
    def __init__(
        self,
        host: PluginHost,
        context: PluginContext,
        intake: Intake,
        metrics: Metrics,
        admin_routes: tuple[Any, ...],
    ) -> None:
        self.host = host
        self.context = context
        self.intake = intake
        self.metrics = metrics
        self.admin_routes = admin_routes
        self._running: dict[str, _Running] = {}
        self._admin: web.AppRunner | None = None
        self._admin_listen: str | None = None
        self._applied = False

    async def apply(self, config: Config) -> list[str]:
        """Start, stop and restart sources to match `config`; returns once every listener
        it started is bound (or failed to bind).

        At start-up a source that cannot be built (unknown name, bad settings) raises
        PluginError and a listener that cannot bind raises ListenerUnavailable, which stop the
        daemon with that message. After a reload both are logged and reported not ready, the
        other sources go on, and the listeners' errors are returned (for ``last_error``).
        """
        strict = not self._applied
        wanted = {name: dict(source.settings) for name, source in config.sources.items()}
        for name in list(self._running):
            if name not in wanted or wanted[name] != self._running[name].settings:
                if name in wanted and await self._reconfigure(name, wanted[name]):
                    continue
                await self._stop(name)
        started = []
        for name, settings in wanted.items():
            if name not in self._running:
                self._start(name, settings, strict=strict)
                started.append(name)
        self._applied = True
        failures = await self._listeners_bound(started, strict=strict)
        try:
            await self._apply_admin_listener(config)
        except OSError as exc:
            if strict:
                raise
            log.error("admin listener not started", error=str(exc))
            failures.append(str(exc))
        return failures

    async def listener_problems(self, config: Config) -> list[str]:
        """Listen addresses `config` would newly bind that cannot be bound now.

        Addresses this daemon holds already are not probed (a listener that is restarted on
        the same address frees it first). Checked before a reload swaps anything in.
        """
        held = [r.listen for r in self._running.values() if r.started and r.listen]
        if self._admin_listen is not None:
            held.append(self._admin_listen)
        wanted: list[tuple[str, str]] = []
        for name, source in config.sources.items():
            running = self._running.get(name)
            if running is not None and running.settings == dict(source.settings):
                continue
            try:
                instance = self._build(name, source.settings)
            except PluginError:
                continue  # source_problems reports it
            listen = getattr(instance, "listen", None)
            if listen:
                wanted.append((f"{source.location}: [sources.{name}] listen", str(listen)))
        if config.admin_endpoint is None:
            wanted.append(("[daemon] admin_listen", config.daemon.admin_listen))
        problems = []
        for label, listen in wanted:
            if any(same_listen(listen, mine) for mine in held):
                continue
            try:
                await probe_listen(listen, label)
            except ListenerUnavailable as exc:
                problems.append(str(exc))
        return problems

    def errors(self) -> dict[str, str]:
        """For /readyz: the last error of each source that is not running, and the `problem`
        a running source reports about itself (a file drop whose read hangs)."""
        found: dict[str, str] = {}
        for name, running in self._running.items():
            problem = getattr(running.instance, "problem", None) if running.started else None
            if running.error and not running.started:
                found[name] = running.error
            elif problem:
                found[name] = str(problem)
        return found

    def readiness(self) -> dict[str, bool]:
        result = {}
        for name, running in self._running.items():
            ready = (
                running.instance is not None
                and running.started
                and bool(getattr(running.instance, "ready", True))
            )
            result[name] = ready
            self.metrics.sources_ready.labels(name).set(1 if ready else 0)
        return result

    async def stop_all(self) -> None:
        for name in list(self._running):
            await self._stop(name)
        await self._stop_admin()

    def _start(self, name: str, settings: Mapping[str, Any], *, strict: bool) -> None:
        try:
            instance = self._build(name, settings)
        except PluginError as exc:
            if strict:
                raise
            log.error("source not started", source=name, error=str(exc))
            self._running[name] = _Running(settings, None, error=str(exc))
            return
        running = _Running(settings, instance)
        running.task = asyncio.create_task(
            self._supervise(name, running, strict=strict), name=f"source-{name}"
        )
        self._running[name] = running

    async def _listeners_bound(self, names: list[str], *, strict: bool) -> list[str]:
        """Wait for the first start of each listener among `names`; at start-up (`strict`)
        raise the first bind failure, after a reload return them as messages."""
        listeners = [self._running[n] for n in names if self._running[n].listen is not None]
        outcomes = await asyncio.gather(*(r.first_start for r in listeners))
        failures = [error for error in outcomes if error is not None]
        if strict:
            for error in failures:
                if isinstance(error, OSError):
                    raise error
        return [str(error) for error in failures]

    def _build(self, name: str, settings: Mapping[str, Any]) -> Any:
        return build_source(self.host, self.context, name, settings)

    async def _supervise(self, name: str, running: _Running, *, strict: bool) -> None:
        """Start a source and keep it running.

        A `start` that raises, or a watched awaitable (what `start` returned) that ends while
        the source should run, is a crash: the source is stopped, counted in
        ``postbackd_source_restarts``, reported not ready, and started again after a backoff.
        A listener whose first start at daemon start-up (`strict`) cannot bind is not retried:
        `apply` fails the start with its error.
        """
        failures = 0
        while True:
            began = time.monotonic()
            try:
                returned = await running.instance.start(self.intake.submitter(name))
                running.started, running.error = True, None
                _settle(running.first_start, None)
                if returned is None:
                    return
                running.watched = asyncio.ensure_future(returned)
                await asyncio.wait([running.watched])
                if running.watched.cancelled():
                    raise RuntimeError("its task was cancelled while the source should be running")
                running.watched.result()
                raise RuntimeError("its task returned while the source should be running")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                crashed = running.started
                running.started = False
                running.error = f"{type(exc).__name__}: {exc}"
                _settle(running.first_start, exc)
                if strict and not crashed and running.listen and isinstance(exc, OSError):
                    with contextlib.suppress(Exception):
                        await running.instance.stop()
                    return
            if time.monotonic() - began >= STABLE_AFTER:
                failures = 0
            delay = RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)]
            failures += 1
            self.metrics.source_restarts.labels(name).inc()
            log.error(
                "source crashed; restarting" if crashed else "source failed to start; retrying",
                source=name,
                plugin=self.host.label(self.host.sources[name].plugin),
                error=running.error,
                retry_in_s=delay,
            )
            with contextlib.suppress(Exception):
                await running.instance.stop()
            await _cancel(running.watched)
            running.watched = None
            await asyncio.sleep(delay)

    async def _reconfigure(self, name: str, settings: Mapping[str, Any]) -> bool:
        """Let a running source take new settings in place, if it can.

        A source may offer ``async reconfigure(settings) -> bool`` (the HTTP source does, for a
        new token): True means applied without a restart, so its listener and connections
        stay; False means stop it and start it anew.
        """
        running = self._running[name]
        reconfigure = getattr(running.instance, "reconfigure", None)
        if reconfigure is None or not running.started:
            return False
        try:
            applied = bool(await reconfigure(dict(settings)))
        except Exception as exc:
            log.error("source refused its new settings; restarting it", source=name, error=str(exc))
            return False
        if applied:
            running.settings = settings
            log.info("source reconfigured in place", source=name)
        return applied

    async def _stop(self, name: str) -> None:
        running = self._running.pop(name)
        await _cancel(running.task)
        if running.instance is None:
            return
        try:
            await running.instance.stop()
        except Exception as exc:
            log.error("source failed to stop cleanly", source=name, error=str(exc))
        await _cancel(running.watched)

    async def _apply_admin_listener(self, config: Config) -> None:
        listen = None if config.admin_endpoint is not None else config.daemon.admin_listen
        if listen == self._admin_listen:
            return
        await self._stop_admin()
        if listen is None:
            return
        daemon = config.daemon
        limits = ConnectionLimits(
            daemon.admin_header_timeout, daemon.admin_body_timeout, daemon.admin_max_connections
        )
        runner = await serve(
            build_app(list(self.admin_routes)), listen, "[daemon] admin_listen", limits
        )
        self._admin, self._admin_listen = runner, listen
        log.info("admin API listening", listen=listen)

    async def _stop_admin(self) -> None:
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin, self._admin_listen = None, None


def _settle(future: asyncio.Future[Exception | None], outcome: Exception | None) -> None:
    """Record a source's first start outcome (later starts do not change it)."""
    if not future.done():
        future.set_result(outcome)


async def _cancel(future: asyncio.Future[Any] | None) -> None:
    """Cancel a task (if still running) and wait for it; its own error is not ours to raise."""
    if future is None:
        return
    if not future.done():
        future.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await future


def build_source(
    host: PluginHost, context: PluginContext, name: str, settings: Mapping[str, Any]
) -> Any:
    """An instance of the source registered as `name`; PluginError when there is none or it
    refuses `settings`. Building only reads settings (``start`` does the I/O)."""
    registered = host.sources.get(name)
    if registered is None:
        known = ", ".join(sorted(host.sources)) or "none"
        raise PluginError(
            f"[sources.{name}]: no source plugin is registered under {name!r} "
            f"(registered: {known}); install the plugin or remove the table"
        )
    label = f"[sources.{name}] of plugin {host.label(registered.plugin)}"
    return instantiate(registered.value, settings, context, label=label)


def source_problems(host: PluginHost, config: Config, context: PluginContext) -> list[str]:
    """Every ``[sources.NAME]`` of `config` that cannot be built, as "file:line: message":
    the reload transaction checks this before it swaps anything."""
    problems = []
    for name, source in config.sources.items():
        try:
            build_source(host, context, name, source.settings)
        except PluginError as exc:
            problems.append(f"{source.location}: {exc}")
    return problems
