"""The composition root: start-up in a clear order, the main loop, reload, and shutdown.

Start: load and validate the configuration → open the spool → sync trigger states → start
the dispatcher → start the sources (intake last, so nothing is accepted before it can be
delivered) → READY. Stop: stop intake first, let attempts in flight finish within `grace`,
close plugins, close the spool. A second SIGTERM/SIGINT exits at once; the spool stays
consistent either way (every write is a committed transaction).

A reload is the transaction of `postbackd.reload`; the daemon gives it the checks only the
running sources can make and what must follow a swap (breakers, the spool's trigger states,
replaced plugins closed, sources rebuilt).

With ``[daemon] workers`` above 1, the main process also starts delivery workers
(`postbackd.workers`). With PostgreSQL each is the same daemon with `worker` set, which claims
and delivers as a node of the fleet but runs no sources and no admin API, and stops when its
standard input — a pipe from the main process — ends. With SQLite they are attempt workers:
the dispatcher's attempts are made there (`AttemptRunner.remote`), the rest stays here.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from postbackd.alerts import AlertMonitor
from postbackd.api import AdminApi
from postbackd.attempt import AttemptRunner
from postbackd.batching.batcher import Batcher
from postbackd.breaker import BreakerBoard
from postbackd.config import Config, ConfigError, ConfigWatcher
from postbackd.dispatcher import Dispatcher
from postbackd.events import Event
from postbackd.generation import Generation, Plugins
from postbackd.housekeeping import Housekeeping
from postbackd.intake import Intake
from postbackd.logs import get_logger
from postbackd.metrics import Metrics
from postbackd.plugin import SubmitResult
from postbackd.plugins import PluginError, close_replaced
from postbackd.reload import Reloader, ReloadRejected, ReloadResult
from postbackd.sdnotify import Notifier
from postbackd.sla import SLA_SOURCE, SlaFiring
from postbackd.spool import NodeBeat, Spool, SpoolError, is_database_url, open_spool
from postbackd.supervisor import SourceSet, source_problems
from postbackd.web import ListenerUnavailable
from postbackd.workers import DeliveryWorkers, WorkerAttempts, worker_node

log = get_logger("postbackd.daemon")


class Daemon:
    def __init__(
        self,
        conf_dir: Path,
        plugins: Plugins,
        *,
        worker_argv: Sequence[str] = (),
        worker: int | None = None,
    ) -> None:
        """`worker_argv`: the arguments a delivery worker of this daemon is started with;
        `worker`: this process is delivery worker number `worker` (None: the main process)."""
        self.conf_dir = conf_dir
        self.plugins = plugins
        self.worker = worker
        self.workers = DeliveryWorkers(worker_argv) if worker is None else None
        self._started = False
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.reloader = Reloader(conf_dir, plugins, self.metrics, self.notifier)
        self.spool: Spool
        self._opened: Spool | None = None  # what shutdown must close, even after a failed start
        self.breakers: BreakerBoard
        self.housekeeping: Housekeeping
        self.source_context = plugins.context()  # until the admin routes exist
        self.sources: SourceSet | None = None
        self.watcher: ConfigWatcher | None = None
        self.intake: Intake | None = None
        self.dispatcher: Dispatcher | None = None
        self._stop = asyncio.Event()
        self._signals = 0
        self._exit_code = 0
        self._stopping = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._dispatcher_task: asyncio.Task[None] | None = None
        self._batcher_task: asyncio.Task[None] | None = None
        self._started_at = time.time()
        self.sla_firing: SlaFiring | None = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        try:
            await self.startup()
        except ConfigError as exc:
            for diagnostic in exc.errors:
                log.error("configuration error", detail=str(diagnostic))
            await self.shutdown()
            return 1
        except ListenerUnavailable as exc:
            log.error("cannot start", listener=exc.label, listen=exc.listen, error=str(exc))
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
        if self.worker is not None:  # every line of this process says which worker wrote it
            structlog.contextvars.bind_contextvars(worker=self.worker)
        self._install_signals()
        generation = await self.reloader.load_first(
            lambda config: [] if self.worker else self._source_problems(config)
        )
        daemon = generation.config.daemon
        node = daemon.node if self.worker is None else worker_node(daemon.node, self.worker)
        self.spool = self._opened = spool = await open_spool(
            daemon.spool,
            synchronous=daemon.synchronous,
            min_free=daemon.min_free,
            exclusive=True,
            node=node,
            lease=daemon.lease,
        )
        await self.heartbeat()
        await self._sync_triggers(generation)
        self.breakers = BreakerBoard(daemon.breaker_failures, daemon.breaker_cooldown)
        runner = AttemptRunner(
            spool, self.plugins.deliveries, self.breakers, self.metrics, self.plugins.host.hook
        )
        if self.workers is not None and not is_database_url(daemon.spool):
            runner.remote = self.workers.attempts = WorkerAttempts()
        self.dispatcher = Dispatcher(spool, self.current, self.breakers, runner)
        spool.on_new_work(self.wake)  # another node's intake, a retry from elsewhere
        self.sla_firing = SlaFiring(spool, self.current, self._submit_alert)
        self.intake = Intake(
            spool, self.current, self.metrics, self._committed, self.sla_firing.wake
        )
        self._dispatcher_task = asyncio.create_task(self.dispatcher.run(), name="dispatcher")
        self._dispatcher_task.add_done_callback(self._dispatcher_ended)
        self._tasks.append(self._dispatcher_task)
        batcher = Batcher(
            spool, self.current, self.plugins.deliveries, self.plugins.host.hook, self.metrics
        )
        self._batcher_task = asyncio.create_task(batcher.run(), name="batcher")
        self._batcher_task.add_done_callback(self._dispatcher_ended)
        self._tasks.append(self._batcher_task)
        self.alerts = AlertMonitor(self.current, self.intake, self.breakers, self._source_states)
        runner.watch = batcher.watch = self.alerts
        self._tasks.extend(self.alerts.tasks())
        if self.worker is None:
            # a delivery worker reloads too, but a rejected reload is told of by the main
            # process; delay alerts go out through the main process's intake
            self.reloader.on_rejected = self.alerts.reload_rejected
            self._tasks.append(asyncio.create_task(self.sla_firing.run(), name="sla-firing"))
        self.housekeeping = Housekeeping(
            spool,
            self.current,
            self.metrics,
            self.breakers,
            self.notifier,
            self.healthy,
            self.heartbeat,
        )
        self._tasks.extend(self.housekeeping.tasks())
        if self.workers is not None:
            admin_routes = tuple(AdminApi(self).routes())
            self.source_context = self.plugins.context(admin_routes)
            self.sources = SourceSet(
                self.plugins.host, self.source_context, self.intake, self.metrics, admin_routes
            )
            await self.sources.apply(generation.config)  # returns once every listener is bound
            await self.workers.resize(daemon.workers)
        else:
            self._tasks.append(asyncio.create_task(self._follow_lifeline(), name="lifeline"))
        self.watcher = ConfigWatcher(self.conf_dir, self.reload)
        self.watcher.start()
        self._started = True
        # What start-up built lives as long as the daemon: out of the collector's sight, a full
        # collection no longer walks it (a pause that showed in the latency tail).
        gc.collect()
        gc.freeze()
        log.info(
            "postbackd ready" if self.worker is None else "delivery worker ready",
            worker=self.worker,
            node=node,
            conf_dir=str(self.conf_dir),
            spool=str(daemon.spool),
            generation=generation.number,
            customers=len(generation.config.customers),
            triggers=len(generation.config.triggers),
            pid=os.getpid(),
        )
        self.notifier.ready(self.reloader.status())

    async def shutdown(self) -> None:
        """Stop what was started, in reverse order; tolerates a start-up that failed midway."""
        self._stopping = True
        self.notifier.stopping()
        log.info("postbackd stopping: intake closed, finishing attempts in flight")
        if self.intake is not None:
            self.intake.close()
        if self.watcher is not None:
            await self.watcher.stop()
        self.reloader.closing = True
        async with self.reloader.lock:  # a reload in progress finishes first
            if self.sources is not None:
                await self.sources.stop_all()
        if self.reloader.loaded:
            grace = self.current().config.daemon.grace
            await asyncio.gather(
                self.dispatcher.stop(grace) if self.dispatcher is not None else _nothing(),
                self.workers.stop(grace) if self.workers is not None else _nothing(),
            )
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
        if not self._started:
            log.info("reload requested during start-up: ignored, the files are being read now")
            return
        self.reloader.start(reason, self)

    async def _follow_lifeline(self) -> None:
        """A delivery worker stops when the main process is gone, however it went (``kill -9``
        included): its standard input is a pipe from the main process, which ends then."""
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while await reader.read(4096):
            pass
        if not self._stopping:
            log.warning("the main process is gone: delivery worker stopping", worker=self.worker)
            self.request_stop("lifeline")

    def _dispatcher_ended(self, task: asyncio.Task[None]) -> None:
        """The dispatcher (or the batcher) never returns on its own: if it died, nothing (no
        shipment file) would be delivered."""
        if task.cancelled() or self._stopping:
            return
        error = task.exception()
        log.error(f"the {task.get_name()} stopped unexpectedly; exiting", error=repr(error))
        self._exit_code = 1
        self._stop.set()

    # ------------------------------------------------------------------ state

    def current(self) -> Generation:
        return self.reloader.current()

    @property
    def last_error(self) -> str | None:
        """Why the last reload was rejected (or a listener could not be rebuilt); None if not."""
        return self.reloader.last_error

    def _source_states(self) -> tuple[dict[str, bool], dict[str, str]]:
        """Each source's readiness and the errors of those not ready (for the alerts)."""
        if self.sources is None:
            return {}, {}
        return self.sources.readiness(), self.sources.errors()

    def healthy(self) -> bool:
        """Whether systemd's watchdog should be fed: the loop turns and the dispatcher runs."""
        return self._dispatcher_task is not None and not self._dispatcher_task.done()

    def wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def refresh_gauges(self) -> object:
        if self.sources is not None:
            self.sources.readiness()  # postbackd_source_ready as of this scrape, not the last look
        return await self.housekeeping.refresh_gauges()

    async def _submit_alert(self, event: Event) -> SubmitResult:
        """A delay alert of an ``[[sla]]`` rule, into intake like any source's event."""
        assert self.intake is not None  # built with the firing loop, before it runs
        return await self.intake.submit(event, source=SLA_SOURCE)

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

    async def heartbeat(self) -> None:
        """Tell the spool this node is live and what it runs (a fleet's nodes compare these)."""
        generation = self.current()
        triggers = generation.config.triggers.values()
        await self.spool.heartbeat(
            NodeBeat(
                node=generation.config.daemon.node,
                generation=generation.number,
                fingerprint=generation.fingerprint,
                started_at=self._started_at,
                triggers=tuple(sorted(t.name for t in triggers)),
                active_triggers=tuple(sorted(t.name for t in triggers if t.active)),
            )
        )

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
        """The reload transaction (`Reloader.reload`), answered once the outcome is known."""
        return await self.reloader.reload(reason, self)

    async def problems(self, generation: Generation) -> list[str]:
        """What only the running daemon can check: its sources built, new addresses free
        (nothing for a delivery worker, which runs no sources)."""
        if self.sources is None:
            return []
        config = generation.config
        return self._source_problems(config) + await self.sources.listener_problems(config)

    def _source_problems(self, config: Config) -> list[str]:
        return source_problems(self.plugins.host, config, self.source_context)

    async def follow(self, generation: Generation, replaced: list[Any]) -> None:
        """What depends on the new generation besides the sources: breakers, spool states."""
        daemon = generation.config.daemon
        self.breakers.configure(daemon.breaker_failures, daemon.breaker_cooldown)
        try:
            await self.heartbeat()  # first: the fleet must see what this node knows now
            await self._sync_triggers(generation)
        except Exception as exc:  # attempts check their trigger anyway; this is the fast path
            log.error("trigger states not synced to the spool", error=str(exc))
        self.wake()
        for plugin in replaced:
            self._tasks.append(asyncio.create_task(close_replaced(plugin)))
        if self.workers is not None:
            self.workers.reload()
            self._tasks.append(asyncio.create_task(self.workers.resize(daemon.workers)))

    async def rebuild_sources(self, config: Config) -> list[str]:
        if self.sources is None:  # a delivery worker
            return []
        return await self.sources.apply(config)

    # ------------------------------------------------------------------ reporting

    def readiness(self) -> dict[str, Any]:
        sources = self.sources.readiness() if self.sources is not None else {}
        errors = self.sources.errors() if self.sources is not None else {}
        spool = self._opened is not None and self._opened.available
        ready = self.reloader.loaded and all(sources.values()) and spool
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
            "node": config.daemon.node,
            "generation": generation.number,
            "fingerprint": generation.fingerprint,
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


async def _nothing() -> None:
    """An awaitable that does nothing, for a `gather` whose other part may be missing."""
