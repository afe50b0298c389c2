"""The composition root: start-up in a clear order, the main loop, reload, and shutdown.

Start: load and validate the configuration → open the spool → sync trigger states → start
the dispatcher → start the sources (intake last, so nothing is accepted before it can be
delivered) → READY. Stop: stop intake first, let attempts in flight finish within `grace`,
close plugins, close the spool. A second SIGTERM/SIGINT exits at once; the spool stays
consistent either way (every write is a committed transaction).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from postbackd.api import AdminApi
from postbackd.attempt import AttemptRunner
from postbackd.breaker import BreakerBoard
from postbackd.config import ConfigError
from postbackd.confwatch import ConfigWatcher
from postbackd.dispatcher import Dispatcher
from postbackd.events import Event
from postbackd.housekeeping import Housekeeping
from postbackd.intake import Generation, Intake
from postbackd.loading import Plugins, load_generation
from postbackd.logs import get_logger
from postbackd.metrics import Metrics
from postbackd.plugins import PluginError
from postbackd.sdnotify import Notifier
from postbackd.sources_runner import SourceSet
from postbackd.spool import Spool

log = get_logger("postbackd.daemon")


class Daemon:
    def __init__(self, conf_dir: Path, plugins: Plugins) -> None:
        self.conf_dir = conf_dir
        self.plugins = plugins
        self.metrics = Metrics()
        self.notifier = Notifier()
        self._generation: Generation | None = None
        self.last_error: str | None = None
        self.spool: Spool
        self._stop = asyncio.Event()
        self._signals = 0
        self._reload_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        try:
            await self.startup()
        except ConfigError as exc:
            for diagnostic in exc.diagnostics:
                log.error("configuration error", detail=str(diagnostic))
            return 1
        except PluginError as exc:
            log.error("plugin error", detail=str(exc))
            return 1
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()
        return 0

    async def startup(self) -> None:
        generation = await asyncio.to_thread(load_generation, self.conf_dir, self.plugins, 1)
        self._apply(generation)
        daemon = generation.config.daemon
        self.spool = await Spool.open(
            daemon.spool, synchronous=daemon.synchronous, min_free=daemon.min_free, exclusive=True
        )
        await self._sync_triggers(generation)
        self.breakers = BreakerBoard(daemon.breaker_failures, daemon.breaker_cooldown)
        runner = AttemptRunner(
            self.spool, self.plugins.deliveries, self.breakers, self.metrics, self.plugins.host.hook
        )
        self.dispatcher = Dispatcher(
            self.spool, self.current, self.plugins.deliveries, self.breakers, runner
        )
        self.intake = Intake(self.spool, self.current, self.metrics, self._committed)
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="dispatcher"))
        self.housekeeping = Housekeeping(
            self.spool, self.current, self.metrics, self.breakers, self.notifier
        )
        self._tasks.extend(self.housekeeping.tasks())
        admin_routes = tuple(AdminApi(self).routes())
        self.sources = SourceSet(
            self.plugins.host,
            self.plugins.context(admin_routes),
            self.intake,
            self.metrics,
            admin_routes,
        )
        await self.sources.apply(generation.config)
        self._install_signals()
        self.watcher = ConfigWatcher(self.conf_dir, self.reload)
        self.watcher.start()
        log.info(
            "postbackd ready",
            conf_dir=str(self.conf_dir),
            spool=str(daemon.spool),
            customers=len(generation.config.customers),
            triggers=len(generation.config.triggers),
            pid=os.getpid(),
        )
        self.notifier.ready(self._status())

    async def shutdown(self) -> None:
        self.notifier.stopping()
        log.info("postbackd stopping: intake closed, finishing attempts in flight")
        self.intake.closed = True
        self.watcher.stop()
        await self.sources.stop_all()
        await self.dispatcher.stop(self.current().config.daemon.grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for name, plugin in self.plugins.deliveries.items():
            try:
                await plugin.close()
            except Exception as exc:
                log.error("delivery plugin failed to close", plugin=name, error=str(exc))
        await self.spool.close()
        log.info("postbackd stopped")

    def request_stop(self, signame: str = "SIGTERM") -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting at once", signal=signame)
            os._exit(1)
        log.info("stop requested", signal=signame)
        self._stop.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload("SIGHUP")))

    # ------------------------------------------------------------------ state

    def current(self) -> Generation:
        assert self._generation is not None
        return self._generation

    def wake(self) -> None:
        self.dispatcher.wake()

    async def refresh_gauges(self) -> object:
        return await self.housekeeping.refresh_gauges()

    def _committed(self, event: Event) -> None:
        self.dispatcher.wake()
        try:
            self.plugins.host.hook.postbackd_after_event_accepted(event=event)
        except Exception as exc:
            log.error(
                "observer plugin raised",
                hook="postbackd_after_event_accepted",
                event_id=event.id,
                error=f"{type(exc).__name__}: {exc}",
            )

    def _apply(self, generation: Generation) -> list[Any]:
        """Swap in a generation; returns delivery plugin instances it replaced (to close).

        Delivery plugins whose ``[deliveries.NAME]`` table changed are rebuilt first: if one
        refuses its new settings (PluginError), nothing is swapped.
        """
        self.plugins.holder.value = generation.config
        try:
            replaced = self.plugins.build_deliveries(generation.config.deliveries)
        except PluginError:
            if self._generation is not None:
                self.plugins.holder.value = self._generation.config
            raise
        self._generation = generation
        self.metrics.config_generation.set(generation.number)
        return replaced

    async def _sync_triggers(self, generation: Generation) -> None:
        triggers = generation.config.triggers.values()
        await self.spool.sync_triggers(
            active=[t.name for t in triggers if t.active],
            inactive=[t.name for t in triggers if not t.active],
        )

    async def reload(self, reason: str) -> dict[str, Any]:
        """Load, validate and swap in the configuration; on any error keep the running one."""
        async with self._reload_lock:
            self.notifier.reloading()
            started = time.monotonic()
            number = self.current().number + 1
            try:
                generation = await asyncio.to_thread(
                    load_generation, self.conf_dir, self.plugins, number
                )
                replaced = self._apply(generation)
            except (ConfigError, PluginError) as exc:
                errors = (
                    [str(d) for d in exc.diagnostics if d.is_error]
                    if isinstance(exc, ConfigError)
                    else [str(exc)]
                )
                self.last_error = "\n".join(errors)
                self.metrics.config_reloads.labels("rejected").inc()
                log.error(
                    "reload rejected; the running configuration stays",
                    reason=reason,
                    errors=errors,
                )
                self.notifier.ready(self._status())
                return {"ok": False, "generation": self.current().number, "error": self.last_error}
            self.last_error = None
            daemon = generation.config.daemon
            self.breakers.configure(daemon.breaker_failures, daemon.breaker_cooldown)
            await self._sync_triggers(generation)
            await self.sources.apply(generation.config)
            self.dispatcher.wake()
            for plugin in replaced:
                self._tasks.append(asyncio.create_task(_close_later(plugin)))
            self.metrics.config_reloads.labels("applied").inc()
            log.info(
                "reload applied",
                reason=reason,
                generation=number,
                ms=round((time.monotonic() - started) * 1000, 1),
            )
            self.notifier.ready(self._status())
            return {"ok": True, "generation": number, "error": None}

    def readiness(self) -> dict[str, Any]:
        sources = self.sources.readiness()
        ready = self._generation is not None and all(sources.values())
        return {"ready": ready, "generation": self.current().number, "sources": sources}

    def config_status(self) -> dict[str, Any]:
        generation = self.current()
        config = generation.config
        return {
            "generation": generation.number,
            "loaded_at": generation.loaded_at,
            "last_error": self.last_error,
            "customers": sorted(config.customers),
            "triggers": {
                name: {
                    "customer": t.customer,
                    "status": t.status,
                    "delivery": t.delivery,
                    "events": list(t.events),
                }
                for name, t in sorted(config.triggers.items())
            },
        }

    def _status(self) -> str:
        return f"generation {self.current().number}, {len(self.current().config.triggers)} triggers"


async def _close_later(plugin: Any, delay: float = 60.0) -> None:
    """Close a replaced delivery plugin once attempts already using it are over."""
    await asyncio.sleep(delay)
    try:
        await plugin.close()
    except Exception as exc:
        log.error("replaced delivery plugin failed to close", error=str(exc))
