"""The composition root: start-up in a clear order, the main loop, reload, and shutdown.

Start: load and validate the configuration → open the spool → sync trigger states → start
the dispatcher → start the sources (intake last, so nothing is accepted before it can be
delivered) → READY. Stop: stop intake first, let attempts in flight finish within `grace`,
close plugins, close the spool. A second SIGTERM/SIGINT exits at once; the spool stays
consistent either way (every write is a committed transaction).

A reload is a transaction (as in Vector's topology): the whole directory is loaded and
validated — trigger options by their delivery plugin, sources by building them — before
anything is swapped; on any error the running generation stays and the error is logged with
file and line. Then only what changed is rebuilt. The reload runs in its own task, and its
answer is given as soon as the swap is done: a ``POST /v1/reload`` that arrived on a listener
the reload itself replaces must not wait for that listener's graceful shutdown.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from pathlib import Path
from typing import Any

from postbackd.api import AdminApi
from postbackd.attempt import AttemptRunner
from postbackd.breaker import BreakerBoard
from postbackd.config import Config, ConfigError, ConfigWatcher
from postbackd.dispatcher import Dispatcher
from postbackd.events import Event
from postbackd.generation import Generation, Plugins, load_generation
from postbackd.housekeeping import Housekeeping
from postbackd.intake import Intake
from postbackd.logs import get_logger, mask_secret_values
from postbackd.metrics import Metrics
from postbackd.plugins import PluginError
from postbackd.redaction import NO_SECRETS, Redactor
from postbackd.sdnotify import Notifier
from postbackd.spool import Spool, SpoolError, open_spool
from postbackd.supervisor import SourceSet, source_problems

log = get_logger("postbackd.daemon")

ReloadResult = dict[str, Any]


class ReloadRejected(Exception):
    """The new configuration is invalid; `errors` say where and what (file:line: message)."""

    def __init__(self, errors: list[str], redactor: Redactor = NO_SECRETS) -> None:
        """`redactor`: the secrets of the refused configuration, masked in `errors` by value
        (a plugin's message may quote an expanded setting: a URL with its password)."""
        self.errors = [redactor.text(error) for error in errors]
        super().__init__("\n".join(self.errors))


class Daemon:
    def __init__(self, conf_dir: Path, plugins: Plugins) -> None:
        self.conf_dir = conf_dir
        self.plugins = plugins
        self.metrics = Metrics()
        self.notifier = Notifier()
        self._generation: Generation | None = None
        self.last_error: str | None = None
        self.spool: Spool
        self._opened: Spool | None = None  # what shutdown must close, even after a failed start
        self.sources: SourceSet | None = None
        self.watcher: ConfigWatcher | None = None
        self.intake: Intake | None = None
        self.dispatcher: Dispatcher | None = None
        self._stop = asyncio.Event()
        self._signals = 0
        self._exit_code = 0
        self._stopping = False
        self._reload_lock = asyncio.Lock()
        self._reloads: set[asyncio.Future[Any]] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._dispatcher_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        try:
            await self.startup()
        except ConfigError as exc:
            for diagnostic in exc.errors:
                log.error("configuration error", detail=str(diagnostic))
            await self.shutdown()
            return 1
        except (ReloadRejected, PluginError, SpoolError, OSError) as exc:
            log.error("cannot start", error=str(exc))
            await self.shutdown()
            return 1
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()
        return self._exit_code

    async def startup(self) -> None:
        self._install_signals()
        generation = await asyncio.to_thread(load_generation, self.conf_dir, self.plugins, 1)
        problems = source_problems(self.plugins.host, generation.config, self.plugins.context())
        if problems:
            raise ReloadRejected(problems, generation.config.redactor)
        self._apply(generation)
        daemon = generation.config.daemon
        self.spool = self._opened = spool = await open_spool(
            daemon.spool,
            synchronous=daemon.synchronous,
            min_free=daemon.min_free,
            exclusive=True,
            node=daemon.node,
            lease=daemon.lease,
        )
        await self._sync_triggers(generation)
        self.breakers = BreakerBoard(daemon.breaker_failures, daemon.breaker_cooldown)
        runner = AttemptRunner(
            spool, self.plugins.deliveries, self.breakers, self.metrics, self.plugins.host.hook
        )
        self.dispatcher = Dispatcher(spool, self.current, self.breakers, runner)
        spool.on_new_work(self.wake)  # another node's intake, a retry from elsewhere
        self.intake = Intake(spool, self.current, self.metrics, self._committed)
        self._dispatcher_task = asyncio.create_task(self.dispatcher.run(), name="dispatcher")
        self._dispatcher_task.add_done_callback(self._dispatcher_ended)
        self._tasks.append(self._dispatcher_task)
        self.housekeeping = Housekeeping(
            spool, self.current, self.metrics, self.breakers, self.notifier, self.healthy
        )
        self._tasks.extend(self.housekeeping.tasks())
        admin_routes = tuple(AdminApi(self).routes())
        self.source_context = self.plugins.context(admin_routes)
        self.sources = SourceSet(
            self.plugins.host, self.source_context, self.intake, self.metrics, admin_routes
        )
        await self.sources.apply(generation.config)
        self.watcher = ConfigWatcher(self.conf_dir, self.reload)
        self.watcher.start()
        # What start-up built lives as long as the daemon: out of the collector's sight, a full
        # collection no longer walks it (a pause that showed in the latency tail).
        gc.collect()
        gc.freeze()
        log.info(
            "postbackd ready",
            conf_dir=str(self.conf_dir),
            spool=str(daemon.spool),
            generation=generation.number,
            customers=len(generation.config.customers),
            triggers=len(generation.config.triggers),
            pid=os.getpid(),
        )
        self.notifier.ready(self._status())

    async def shutdown(self) -> None:
        """Stop what was started, in reverse order; tolerates a start-up that failed midway."""
        self._stopping = True
        self.notifier.stopping()
        log.info("postbackd stopping: intake closed, finishing attempts in flight")
        if self.intake is not None:
            self.intake.closed = True
        if self.watcher is not None:
            await self.watcher.stop()
        async with self._reload_lock:  # a reload in progress finishes first
            if self.sources is not None:
                await self.sources.stop_all()
        if self.dispatcher is not None and self._generation is not None:
            await self.dispatcher.stop(self.current().config.daemon.grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for name, plugin in self.plugins.deliveries.items():
            try:
                await plugin.close()
            except Exception as exc:
                log.error("delivery plugin failed to close", plugin=name, error=str(exc))
        if self._opened is not None:
            await self._opened.close()
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
        loop.add_signal_handler(signal.SIGHUP, self._start_reload, "SIGHUP")

    def _start_reload(self, reason: str) -> None:
        if self.sources is None:
            log.info("reload requested during start-up: ignored, the files are being read now")
            return
        task = asyncio.ensure_future(self.reload(reason))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def _dispatcher_ended(self, task: asyncio.Task[None]) -> None:
        """The dispatcher never returns on its own: if it died, nothing would be delivered."""
        if task.cancelled() or self._stopping:
            return
        error = task.exception()
        log.error("the dispatcher stopped unexpectedly; exiting", error=repr(error))
        self._exit_code = 1
        self._stop.set()

    # ------------------------------------------------------------------ state

    def current(self) -> Generation:
        assert self._generation is not None
        return self._generation

    def healthy(self) -> bool:
        """Whether systemd's watchdog should be fed: the loop turns and the dispatcher runs."""
        return self._dispatcher_task is not None and not self._dispatcher_task.done()

    def wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def refresh_gauges(self) -> object:
        return await self.housekeeping.refresh_gauges()

    def _committed(self, event: Event) -> None:
        self.wake()
        try:
            self.plugins.host.hook.postbackd_after_event_accepted(event=event)
        except Exception as exc:
            log.error(
                "observer plugin raised",
                hook="postbackd_after_event_accepted",
                event_id=event.id,
                customer=event.customer,
                error=f"{type(exc).__name__}: {exc}",
            )

    def _apply(self, generation: Generation) -> list[Any]:
        """Swap in a generation; returns delivery plugin instances it replaced (to close).

        Delivery plugins whose ``[deliveries.NAME]`` table changed are rebuilt first: if one
        refuses its new settings (PluginError), nothing is swapped.
        """
        previous = self.plugins.holder.value
        self.plugins.holder.value = generation.config
        try:
            replaced = self.plugins.build_deliveries(generation.config.deliveries)
        except PluginError:
            self.plugins.holder.value = previous
            raise
        self._generation = generation
        mask_secret_values(generation.config.redactor)
        self.metrics.config_generation.set(generation.number)
        return replaced

    async def _sync_triggers(self, generation: Generation) -> None:
        triggers = generation.config.triggers.values()
        changed = await self.spool.sync_triggers(
            active=[t.name for t in triggers if t.active],
            inactive=[t.name for t in triggers if not t.active],
        )
        if changed.held or changed.resumed or changed.cancelled:
            log.info(
                "deliveries follow their triggers",
                generation=generation.number,
                held=changed.held,
                resumed=changed.resumed,
                cancelled=changed.cancelled,
            )

    # ------------------------------------------------------------------ reload

    async def reload(self, reason: str) -> ReloadResult:
        """Load, validate and swap in the configuration; on any error keep the running one.

        Returns ``{"ok", "generation", "error"}`` once the outcome is known; sources that
        changed are rebuilt after that, still under the reload lock.
        """
        answer: asyncio.Future[ReloadResult] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._reload(reason, answer), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)
        return await asyncio.shield(answer)

    async def _reload(self, reason: str, answer: asyncio.Future[ReloadResult]) -> None:
        async with self._reload_lock:
            if self._stopping:
                answer.set_result(self._rejected(reason, ["postbackd is shutting down"]))
                return
            self.notifier.reloading()
            started = time.monotonic()
            number = self.current().number + 1
            try:
                try:
                    generation, replaced = await self._validate_and_swap(number)
                except ReloadRejected as exc:
                    answer.set_result(self._rejected(reason, exc.errors))
                    return
                self.last_error = None
                self.metrics.config_reloads.labels("applied").inc()
                await self._follow(generation, replaced)
                answer.set_result({"ok": True, "generation": number, "error": None})
                await self._rebuild_sources(generation.config)
                log.info(
                    "reload applied",
                    reason=reason,
                    generation=number,
                    customers=len(generation.config.customers),
                    triggers=len(generation.config.triggers),
                    files_parsed=len(self.plugins.config_cache.last_parsed),
                    ms=round((time.monotonic() - started) * 1000, 1),
                )
            except Exception as exc:  # a bug, but the daemon must go on with a known state
                log.exception("reload failed after the swap", reason=reason, generation=number)
                if not answer.done():
                    answer.set_result(
                        {"ok": False, "generation": self.current().number, "error": repr(exc)}
                    )
            finally:
                self.notifier.ready(self._status())

    async def _validate_and_swap(self, number: int) -> tuple[Generation, list[Any]]:
        """The transaction: nothing is changed unless every check passed."""
        try:
            generation = await asyncio.to_thread(
                load_generation, self.conf_dir, self.plugins, number
            )
        except ConfigError as exc:
            raise ReloadRejected([str(d) for d in exc.errors]) from exc
        except (PluginError, OSError) as exc:
            raise ReloadRejected([str(exc)]) from exc
        except Exception as exc:  # a bug, but nothing was swapped: say so, and keep running
            log.exception("configuration could not be loaded", generation=number)
            raise ReloadRejected(
                [
                    f"{self.conf_dir}: the configuration could not be loaded "
                    f"({type(exc).__name__}); this is a bug in postbackd: please report it"
                ]
            ) from exc
        redactor = generation.config.redactor
        problems = source_problems(self.plugins.host, generation.config, self.source_context)
        if problems:
            raise ReloadRejected(problems, redactor)
        try:
            return generation, self._apply(generation)
        except PluginError as exc:
            raise ReloadRejected([str(exc)], redactor) from exc

    async def _follow(self, generation: Generation, replaced: list[Any]) -> None:
        """What depends on the new generation besides the sources: breakers, spool states."""
        daemon = generation.config.daemon
        self.breakers.configure(daemon.breaker_failures, daemon.breaker_cooldown)
        try:
            await self._sync_triggers(generation)
        except Exception as exc:  # attempts check their trigger anyway; this is the fast path
            log.error("trigger states not synced to the spool", error=str(exc))
        self.wake()
        for plugin in replaced:
            self._tasks.append(asyncio.create_task(_close_later(plugin)))

    async def _rebuild_sources(self, config: Config) -> None:
        assert self.sources is not None
        try:
            await self.sources.apply(config)
        except OSError as exc:  # e.g. the new admin_listen is taken; the rest is applied
            self.last_error = f"[daemon] admin_listen: {exc}"
            log.error("admin listener not started", error=str(exc))

    def _rejected(self, reason: str, errors: list[str]) -> ReloadResult:
        running = self.current().config.redactor
        errors = [running.text(error) for error in errors]
        self.last_error = "\n".join(errors)
        self.metrics.config_reloads.labels("rejected").inc()
        for error in errors:
            log.error(
                "reload rejected; the running configuration stays",
                reason=reason,
                generation=self.current().number,
                error=error,
            )
        return {"ok": False, "generation": self.current().number, "error": self.last_error}

    # ------------------------------------------------------------------ reporting

    def readiness(self) -> dict[str, Any]:
        sources = self.sources.readiness() if self.sources is not None else {}
        errors = self.sources.errors() if self.sources is not None else {}
        spool = self._opened is not None and self._opened.available
        ready = self._generation is not None and all(sources.values()) and spool
        return {
            "ready": ready,
            "spool": spool,
            "generation": self.current().number,
            "sources": sources,
            "source_errors": errors,
        }

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
        config = self.current().config
        return (
            f"generation {self.current().number}: {len(config.customers)} customers, "
            f"{len(config.triggers)} triggers"
        )


async def _close_later(plugin: Any, delay: float = 60.0) -> None:
    """Close a replaced delivery plugin once attempts already using it are over."""
    await asyncio.sleep(delay)
    try:
        await plugin.close()
    except Exception as exc:
        log.error("replaced delivery plugin failed to close", error=str(exc))
