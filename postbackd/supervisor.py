"""Runs the configured sources and the admin listener; applies source changes on reload.

Only what changed is rebuilt: a source whose ``[sources.NAME]`` table is unchanged keeps
running (its listener keeps serving) across a reload; a changed one is stopped and started
with its new settings. Unless a source serves the admin API on its own listener (it declares
an `AdminEndpoint`), the admin API listens on ``[daemon] admin_listen``, so health and metrics
always exist.

Sources are supervised: one whose ``start`` raises, or whose watched task (what ``start``
returned) dies, is stopped, reported not ready, counted, and started again with backoff —
the rest of the daemon goes on.
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
from postbackd.web import build_app, split_listen

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

    async def apply(self, config: Config) -> None:
        """Start, stop and restart sources to match `config`.

        At start-up a source that cannot be built (unknown name, bad settings) raises
        PluginError, which stops the daemon with that message; after a reload it is logged
        and reported not ready, and the other sources go on.
        """
        wanted = {name: dict(source.settings) for name, source in config.sources.items()}
        for name in list(self._running):
            if name not in wanted or wanted[name] != self._running[name].settings:
                if name in wanted and await self._reconfigure(name, wanted[name]):
                    continue
                await self._stop(name)
        for name, settings in wanted.items():
            if name not in self._running:
                self._start(name, settings, strict=not self._applied)
        self._applied = True
        await self._apply_admin_listener(config)

    def errors(self) -> dict[str, str]:
        """The last error of each source that is not running, for /readyz."""
        return {name: r.error for name, r in self._running.items() if r.error and not r.started}

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
        running.task = asyncio.create_task(self._supervise(name, running), name=f"source-{name}")
        self._running[name] = running

    def _build(self, name: str, settings: Mapping[str, Any]) -> Any:
        return build_source(self.host, self.context, name, settings)

    async def _supervise(self, name: str, running: _Running) -> None:
        """Start a source and keep it running.

        A `start` that raises, or a watched awaitable (what `start` returned) that ends while
        the source should run, is a crash: the source is stopped, counted in
        ``postbackd_source_restarts``, reported not ready, and started again after a backoff.
        """
        failures = 0
        while True:
            began = time.monotonic()
            try:
                returned = await running.instance.start(self.intake.submitter(name))
                running.started, running.error = True, None
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
        runner = web.AppRunner(
            build_app(list(self.admin_routes)), access_log=None, handle_signals=False
        )
        await runner.setup()
        host, port = split_listen(listen)
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        self._admin, self._admin_listen = runner, listen
        log.info("admin API listening", listen=listen)

    async def _stop_admin(self) -> None:
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin, self._admin_listen = None, None


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
