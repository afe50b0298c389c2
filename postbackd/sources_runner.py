"""Runs the configured sources and the admin listener; applies source changes on reload.

Only what changed is rebuilt: a source whose ``[sources.NAME]`` table is unchanged keeps
running (its listener keeps serving) across a reload; a changed one is stopped and started
with its new settings. With no HTTP source, the admin API still listens on
``[daemon] admin_listen`` so health and metrics always exist. A source whose start fails is
retried with backoff and reported not ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from postbackd.api import build_app, split_listen
from postbackd.config_model import Config
from postbackd.intake import Intake
from postbackd.logs import get_logger
from postbackd.metrics import Metrics
from postbackd.plugin import PluginContext
from postbackd.plugins import PluginHost, instantiate

log = get_logger("postbackd.sources")

RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
HTTP_SOURCE = "http"


@dataclass
class _Running:
    settings: Mapping[str, Any]
    instance: Any
    started: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


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

    async def apply(self, config: Config) -> None:
        wanted = {name: dict(source.settings) for name, source in config.sources.items()}
        for name in list(self._running):
            if name not in wanted or wanted[name] != self._running[name].settings:
                await self._stop(name)
        for name, settings in wanted.items():
            if name not in self._running:
                self._start(name, settings)
        await self._apply_admin_listener(config)

    def readiness(self) -> dict[str, bool]:
        result = {}
        for name, running in self._running.items():
            ready = running.started and bool(getattr(running.instance, "ready", True))
            result[name] = ready
            self.metrics.sources_ready.labels(name).set(1 if ready else 0)
        return result

    async def stop_all(self) -> None:
        for name in list(self._running):
            await self._stop(name)
        await self._stop_admin()

    def _start(self, name: str, settings: Mapping[str, Any]) -> None:
        registered = self.host.sources.get(name)
        if registered is None:  # the config loader reports this; never start a stranger
            log.error("no source plugin registered under this name", source=name)
            return
        instance = instantiate(registered.value, settings, self.context)
        running = _Running(settings, instance)
        running.task = asyncio.create_task(self._keep_started(name, running), name=f"source-{name}")
        self._running[name] = running

    async def _keep_started(self, name: str, running: _Running) -> None:
        """Start a source; if `start` raises, try again with backoff until it works."""
        for attempt in itertools.count():
            try:
                await running.instance.start(self.intake.submitter(name))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = RESTART_BACKOFF[min(attempt, len(RESTART_BACKOFF) - 1)]
                log.error(
                    "source failed to start; retrying",
                    source=name,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=delay,
                )
                with contextlib.suppress(Exception):
                    await running.instance.stop()
                await asyncio.sleep(delay)
                continue
            running.started = True
            return

    async def _stop(self, name: str) -> None:
        running = self._running.pop(name)
        if running.task is not None and not running.task.done():
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running.task
        try:
            await running.instance.stop()
        except Exception as exc:
            log.error("source failed to stop cleanly", source=name, error=str(exc))

    async def _apply_admin_listener(self, config: Config) -> None:
        listen = None if HTTP_SOURCE in config.sources else config.daemon.admin_listen
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
