"""Delivery workers: the processes `[daemon] workers` starts beside the main one.

One Python process runs its event loop on one core; ``workers = N`` makes `postbackd run` start
N - 1 more, each ``postbackd run …`` with a hidden option naming its number. What a worker does
depends on the spool:

- **PostgreSQL** (``--worker K``): every process pointed at the database is a node of the fleet
  (DESIGN §10), so a worker claims and delivers like any node but has no sources and no admin
  API — intake, the API, the UI and systemd's notifications stay with the main process. Its
  standard input is a pipe from the parent.
- **SQLite** (``--attempt-worker K``): the spool file has one owner, the main process, so a
  worker only makes attempts the main process sends it over a socket (its standard input;
  `postbackd.workers.remote`, `postbackd.workers.serve`).

The main process owns its workers:
- each child's standard input is its *lifeline*: when the parent exits, however it exits
  (``kill -9`` included), the child reads end-of-file and stops, so a worker never outlives its
  daemon;
- a worker that exits on its own is logged and started again, after a pause that grows with
  repeated failures (1 s, doubling to 30 s);
- a reload of the main process (SIGHUP, the API, a file change) is passed on as SIGHUP, and a
  changed ``workers`` count starts or stops workers;
- stop sends SIGTERM and waits for the workers' own grace, then kills what is left.

Each worker's node name is ``NODE.wK`` (K = 2…workers), so the request log says which process
made an attempt. Bounds (`concurrency`, `per_destination`) and breakers are per process for a
PostgreSQL node worker, and the main process's alone for attempt workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from postbackd.logs import get_logger
from postbackd.workers.remote import WorkerAttempts

log = get_logger("postbackd.workers")

RESTART_FIRST = 1.0
RESTART_MOST = 30.0
STEADY = 60.0  # a worker that ran this long before it exited starts the pauses afresh
STOP_EXTRA = 5.0  # beyond a worker's grace: its spool to close, its loop to end
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def worker_node(node: str, worker: int) -> str:
    """The node name of delivery worker `worker` (2, 3, …) of the daemon named `node`."""
    return f"{node}.w{worker}"


def worker_command(argv: Sequence[str], worker: int, *, attempts: bool = False) -> list[str]:
    """The command line of worker `worker`: the interpreter running this daemon, with the
    same arguments (configuration directory, log level, plugin options) and ``--worker`` —
    ``--attempt-worker`` for one that makes attempts for the main process (SQLite)."""
    option = "--attempt-worker" if attempts else "--worker"
    return [sys.executable, "-m", "postbackd", *argv, option, str(worker)]


@dataclass
class _Child:
    number: int
    process: asyncio.subprocess.Process
    started: float = field(default_factory=time.monotonic)
    watcher: asyncio.Task[None] | None = None
    leaving: bool = False  # asked to stop: its exit is not a failure


class DeliveryWorkers:
    """The running workers of one daemon, kept at the configured count."""

    def __init__(self, argv: Sequence[str]) -> None:
        self._argv = list(argv)
        # set (SQLite spool): the workers make attempts for this process, over a socket each
        self.attempts: WorkerAttempts | None = None
        self._children: dict[int, _Child] = {}
        self._wanted = 1
        self._failures: dict[int, int] = {}
        self._closed = False

    @property
    def count(self) -> int:
        """Worker processes running now (the main process not included)."""
        return sum(1 for child in self._children.values() if child.process.returncode is None)

    async def resize(self, workers: int) -> None:
        """Run workers 2…`workers` (none for 1): start the missing ones, stop the extra."""
        self._wanted = workers
        extra = [n for n in self._children if n > workers]
        await asyncio.gather(*(self._stop_child(self._children[n], grace=10.0) for n in extra))
        for number in range(2, workers + 1):
            if number not in self._children:
                await self._start(number)

    def reload(self) -> None:
        """Pass a reload on: each worker reads the configuration directory again."""
        for child in self._children.values():
            if child.process.returncode is None:
                child.process.send_signal(signal.SIGHUP)

    async def stop(self, grace: float) -> None:
        """SIGTERM every worker, wait for them (their grace and a little), then kill the rest."""
        self._closed = True
        children = list(self._children.values())
        await asyncio.gather(*(self._stop_child(child, grace) for child in children))
        if self.attempts is not None:
            await self.attempts.close()

    async def _start(self, number: int) -> None:
        environment = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
        ours, theirs = socket.socketpair() if self.attempts is not None else (None, None)
        try:
            process = await asyncio.create_subprocess_exec(
                *worker_command(self._argv, number, attempts=self.attempts is not None),
                # the lifeline: end-of-file when this process exits (and the attempts' socket)
                stdin=theirs.fileno() if theirs is not None else asyncio.subprocess.PIPE,
                env=environment,
                # out of the terminal's process group: Ctrl-C reaches the main process, which
                # stops its workers in order (a second signal would make a worker exit at once)
                start_new_session=True,
            )
        except BaseException:
            if ours is not None:
                ours.close()
            raise
        finally:
            if theirs is not None:
                theirs.close()  # the child has its copy: its exit must end our reads
        if ours is not None and self.attempts is not None:
            await self.attempts.connect(number, ours)
        child = _Child(number, process)
        self._children[number] = child
        child.watcher = asyncio.create_task(self._watch(child), name=f"worker-{number}")
        log.info("delivery worker started", worker=number, pid=process.pid)

    async def _watch(self, child: _Child) -> None:
        code = await child.process.wait()
        if child.leaving or self._closed:
            return
        steady = time.monotonic() - child.started >= STEADY
        failures = 1 if steady else self._failures.get(child.number, 0) + 1
        self._failures[child.number] = failures
        pause = min(RESTART_MOST, RESTART_FIRST * 2 ** (failures - 1))
        log.error(
            "delivery worker exited; starting it again",
            worker=child.number,
            pid=child.process.pid,
            exit_code=code,
            restart_in=pause,
            hint="its log lines above say why; its claimed deliveries go out once their "
            "lease runs out",
        )
        await asyncio.sleep(pause)
        self._children.pop(child.number, None)
        if not self._closed and child.number <= self._wanted:
            await self._start(child.number)

    async def _stop_child(self, child: _Child, grace: float) -> None:
        child.leaving = True
        process = child.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace + STOP_EXTRA)
            except TimeoutError:
                log.error("delivery worker did not stop in time; killed", worker=child.number)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if child.watcher is not None:
            child.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await child.watcher
        if process.stdin is not None:
            process.stdin.close()
        self._children.pop(child.number, None)
        log.info("delivery worker stopped", worker=child.number, exit_code=process.returncode)
