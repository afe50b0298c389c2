"""An attempt worker: the process that makes attempts for a daemon on the SQLite spool.

Started by the daemon (`postbackd run … --attempt-worker K`, `postbackd.workers.processes`)
with a socket as its standard input. It loads the same configuration directory and the same
plugins, and for each `Call` it reads runs the trigger's delivery plugin and answers with the
masked outcome — nothing else: it has no spool, no sources, no admin API.

It makes an attempt only under the configuration the main process named (`Generation.identity`):
otherwise it answers without attempting and the main process makes it. A reload reaches it as
SIGHUP from the main process (it does not watch the directory itself: a reload the main process
rejected must not be applied here). SIGTERM finishes the attempts in flight within the grace
and answers them; end-of-file on the socket — the main process is gone — stops it too.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
from pathlib import Path
from typing import Any

import structlog

from postbackd.attempt import make_attempt
from postbackd.config import Config, ConfigError
from postbackd.generation import Generation, Plugins
from postbackd.logs import get_logger
from postbackd.metrics import Metrics
from postbackd.plugins import PluginError, close_replaced
from postbackd.reload import Reloader, ReloadRejected
from postbackd.sdnotify import Notifier
from postbackd.workers.wire import Answer, Call, Channel, Ready

log = get_logger("postbackd.workers")


class AttemptWorker:
    def __init__(self, conf_dir: Path, plugins: Plugins, number: int) -> None:
        self.conf_dir = conf_dir
        self.plugins = plugins
        self.number = number
        # systemd's variables are not passed to a worker: its notifier stays silent
        self.reloader = Reloader(conf_dir, plugins, Metrics(), Notifier())
        self._stop = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._later: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def run(self) -> int:
        # every line of this process says which worker wrote it (a journal mixes them)
        structlog.contextvars.bind_contextvars(worker=self.number)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        try:
            generation = await self.reloader.load_first(lambda config: [])
        except ConfigError as exc:
            for diagnostic in exc.errors:
                log.error("configuration error", detail=str(diagnostic))
            return 1
        except (ReloadRejected, PluginError, OSError) as exc:
            log.error("delivery worker cannot start", error=str(exc))
            return 1
        channel = await Channel.over(socket.socket(fileno=os.dup(0)))
        channel.send(Ready(os.getpid()))
        gc.collect()
        gc.freeze()  # what start-up built lives as long as the process (see daemon.py)
        log.info(
            "delivery worker ready",
            generation=generation.number,
            pid=os.getpid(),
        )
        reading = asyncio.create_task(self._serve(channel), name="calls")
        stopped = asyncio.create_task(self._stop.wait())
        await asyncio.wait({reading, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if reading.done() and not self._stop.is_set():
            log.warning("the main process is gone: delivery worker stopping")
        self._stopping = True
        reading.cancel()
        stopped.cancel()
        await self._finish(channel)
        return 0

    async def _serve(self, channel: Channel) -> None:
        while (calls := await channel.receive()) is not None:
            for call in calls:
                task = asyncio.create_task(self._attempt(channel, call))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def _attempt(self, channel: Channel, call: Call) -> None:
        generation = self.reloader.current()
        trigger = generation.config.triggers.get(call.trigger)
        plugin = self.plugins.deliveries.get(trigger.delivery) if trigger is not None else None
        if self._stopping or call.identity != generation.identity or plugin is None:
            channel.send(Answer(call.number, None, identity=generation.identity))
            return
        assert trigger is not None
        options = trigger.options if call.options is None else call.options
        made = await make_attempt(generation, trigger, plugin, call.delivery, options)
        channel.send(Answer(call.number, made.outcome, made.started, made.duration))

    async def _finish(self, channel: Channel) -> None:
        """Let the attempts in flight end within the grace and send their answers; close."""
        grace = self.reloader.current().config.daemon.grace
        if self._in_flight:
            count = len(self._in_flight)
            log.info("waiting for attempts in flight", count=count)
            _, late = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in late:  # the main process records them as unknown when we are gone
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        try:
            await asyncio.wait_for(channel.drain(), timeout=5.0)
        except (TimeoutError, ConnectionError):
            pass
        channel.close()
        for task in self._later:
            task.cancel()
        for name, plugin in self.plugins.deliveries.items():
            try:
                await plugin.close()
            except Exception as exc:
                log.error("delivery plugin failed to close", plugin=name, error=str(exc))
        log.info("delivery worker stopped")

    # ------------------------------------------------------------------ reload

    def _reload(self) -> None:
        self.reloader.start("SIGHUP from the main process", self)

    async def problems(self, generation: Generation) -> list[str]:
        return []  # the main process checked its sources; a worker has none

    async def follow(self, generation: Generation, replaced: list[Any]) -> None:
        for plugin in replaced:
            task = asyncio.create_task(close_replaced(plugin))
            self._later.add(task)
            task.add_done_callback(self._later.discard)

    async def rebuild_sources(self, config: Config) -> list[str]:
        return []
