"""The configuration in force, and the transaction that replaces it (as Vector's topology).

A reload loads and validates the whole directory — trigger options by their delivery plugin,
templates compiled, sources built, new listen addresses free — before anything is swapped; on
any error the running generation stays, and the error (file and line, secrets masked) is logged,
counted and kept as `last_error`. Once swapped, what depends on the generation follows (breakers,
the spool's trigger states, replaced plugins closed later), and then only the sources that
changed are rebuilt. A reload runs in its own task and answers as soon as the swap is done: a
``POST /v1/reload`` that arrived on a listener the reload itself replaces must not wait for
that listener's graceful shutdown. Reloads never overlap (`lock`, which shutdown takes too).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from postbackd.config import Config, ConfigError, config_paths
from postbackd.generation import Generation, Plugins, load_generation
from postbackd.logs import get_logger, mask_secret_values
from postbackd.metrics import Metrics
from postbackd.plugins import PluginError
from postbackd.redaction import NO_SECRETS, Redactor
from postbackd.sdnotify import Notifier
from postbackd.units import plural

log = get_logger("postbackd.reload")

SETTLE = 0.25
"""A configuration file changed less than this long ago may be half-written: a reload waits."""
SETTLE_MOST = 2.0  # ... but never longer than this (a file rewritten again and again)

ReloadResult = dict[str, Any]
"""``{"ok", "generation", "error"}``: what ``POST /v1/reload`` and ``postbackd reload`` answer."""


class ReloadRejected(Exception):
    """The new configuration is invalid; `errors` say where and what (file:line: message)."""

    def __init__(self, errors: list[str], redactor: Redactor = NO_SECRETS) -> None:
        """`redactor`: the secrets of the refused configuration, masked in `errors` by value
        (a plugin's message may quote an expanded setting: a URL with its password)."""
        self.errors = [redactor.text(error) for error in errors]
        super().__init__("\n".join(self.errors))


class Followers(Protocol):
    """What the daemon does around a swap: the checks only it can make, and what follows."""

    def problems(self, generation: Generation) -> Awaitable[list[str]]:
        """Why `generation` cannot run (a source that cannot be built, a taken address)."""
        ...

    def follow(self, generation: Generation, replaced: list[Any]) -> Awaitable[None]:
        """After the swap: what depends on the generation besides the sources."""
        ...

    def rebuild_sources(self, config: Config) -> Awaitable[list[str]]:
        """Start, stop and restart sources to match `config`; what could not be applied."""
        ...


class Reloader:
    def __init__(
        self, conf_dir: Path, plugins: Plugins, metrics: Metrics, notifier: Notifier
    ) -> None:
        self.conf_dir = conf_dir
        self.plugins = plugins
        self.metrics = metrics
        self.notifier = notifier
        self.last_error: str | None = None
        self.lock = asyncio.Lock()
        self.closing = False
        self._generation: Generation | None = None
        # told of every rejection (the operational alerts); must not raise
        self.on_rejected: Callable[[list[str], str], None] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    @property
    def loaded(self) -> bool:
        return self._generation is not None

    def current(self) -> Generation:
        assert self._generation is not None, "no configuration loaded yet"
        return self._generation

    def status(self) -> str:
        """The one-line status systemd shows."""
        generation = self.current()
        config = generation.config
        return (
            f"generation {generation.number}: {plural(len(config.customers), 'customer')}, "
            f"{plural(len(config.triggers), 'trigger')}"
        )

    async def load_first(self, check: Callable[[Config], list[str]]) -> Generation:
        """Generation 1, at start-up: loaded, `check`ed (its sources), applied; raises
        ConfigError or ReloadRejected."""
        generation = await asyncio.to_thread(load_generation, self.conf_dir, self.plugins, 1)
        problems = check(generation.config)
        if problems:
            raise ReloadRejected(problems, generation.config.redactor)
        self.apply(generation)
        return generation

    def apply(self, generation: Generation) -> list[Any]:
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

    def start(self, reason: str, followers: Followers) -> None:
        """Reload in the background (SIGHUP, the directory watch): the outcome is logged."""
        task = asyncio.ensure_future(self.reload(reason, followers))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self, reason: str, followers: Followers) -> ReloadResult:
        """Load, validate and swap in the configuration; on any error keep the running one.

        Returns once the outcome is known; sources that changed are rebuilt after that, still
        under the lock.
        """
        answer: asyncio.Future[ReloadResult] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._reload(reason, followers, answer), name="reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(answer)

    async def _reload(
        self, reason: str, followers: Followers, answer: asyncio.Future[ReloadResult]
    ) -> None:
        async with self.lock:
            if self.closing:  # not a configuration problem: nobody is alerted
                answer.set_result(self._rejected(reason, ["postbackd is shutting down"]))
                return
            self.notifier.reloading()
            started = time.monotonic()
            number = self.current().number + 1
            try:
                try:
                    generation, replaced = await self._validate_and_swap(number, followers)
                except ReloadRejected as exc:
                    answer.set_result(self._rejected(reason, exc.errors, alert=True))
                    return
                self.last_error = None
                self.metrics.config_reloads.labels("applied").inc()
                await followers.follow(generation, replaced)
                answer.set_result({"ok": True, "generation": number, "error": None})
                failures = await followers.rebuild_sources(generation.config)
                if failures:  # an address another process took since it was checked
                    self.last_error = "\n".join(failures)
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
                self.notifier.ready(self.status())

    async def _validate_and_swap(
        self, number: int, followers: Followers
    ) -> tuple[Generation, list[Any]]:
        """The transaction: nothing is changed unless every check passed."""
        await files_settled(self.conf_dir)
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
        problems = await followers.problems(generation)
        if problems:
            raise ReloadRejected(problems, redactor)
        try:
            return generation, self.apply(generation)
        except PluginError as exc:
            raise ReloadRejected([str(exc)], redactor) from exc

    def _rejected(self, reason: str, errors: list[str], *, alert: bool = False) -> ReloadResult:
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
        if alert and self.on_rejected is not None:
            self.on_rejected(errors, reason)
        return {"ok": False, "generation": self.current().number, "error": self.last_error}


async def files_settled(conf_dir: Path) -> None:
    """Return once no configuration file has changed for `SETTLE` seconds (at most
    `SETTLE_MOST`).

    A script or an editor that saves in place truncates the file and then writes it. A reload
    that read it in between — a SIGHUP or an API call right after the save, or a busy machine
    that paused the writer — would apply that customer without its triggers, and events posted
    meanwhile would match nothing. The watch of the directory waits for quiet already; this
    makes every other reload wait too. The inode's change time is used, not the modification
    time, which any tool may set to the past or the future.
    """
    deadline = time.monotonic() + SETTLE_MOST
    while True:
        newest = await asyncio.to_thread(_newest_change, conf_dir)
        wait = min(newest + SETTLE - time.time(), SETTLE)  # a clock set back: wait once
        if wait <= 0 or time.monotonic() + wait > deadline:
            return
        await asyncio.sleep(wait)


def _newest_change(conf_dir: Path) -> float:
    newest = 0.0
    for path in config_paths(conf_dir):
        with contextlib.suppress(OSError):  # gone meanwhile: the load will see it gone
            newest = max(newest, os.stat(path).st_ctime)
    return newest
