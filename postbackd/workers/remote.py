"""The main process's side of its attempt workers: attempts sent out, their outcomes back.

With the SQLite spool, `[daemon] workers = N` starts N - 1 attempt workers. The main process
keeps everything that touches the spool file — intake, the dispatcher and its bounds, breakers,
the recording of outcomes, the request log, metrics and the observer hooks — and a worker runs
only the delivery plugin's `deliver` (the webhook's HTTP client, signatures, SMTP): the largest
share of an attempt's CPU, now on another core.

An attempt goes to the ready worker with the fewest in flight. It is made here instead when
no worker is ready (starting, or started again after a crash) or when the worker runs another
configuration than this process (between a reload here and its own; it answers without
attempting). A worker that exits with attempts in flight leaves them unknown — sent or not:
each is recorded as a failed attempt that is tried again on the trigger's schedule, with the
same delivery id (so the receiver can drop a repeat). A worker that does not answer within the
attempt's timeout and a margin gets the same treatment.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from postbackd.attempt import TIMEOUT_MARGIN, Attempted, attempt_timeout
from postbackd.config import Trigger
from postbackd.logs import get_logger
from postbackd.plugin import Delivery, Outcome
from postbackd.workers.wire import Answer, Call, Channel, Ready

log = get_logger("postbackd.workers")


@dataclass(eq=False)
class _Worker:
    number: int
    channel: Channel
    calls: dict[int, asyncio.Future[Answer]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None
    ready: bool = False  # it said so: a worker that fails at start is never sent an attempt
    other_identity: str = ""  # the configuration it said it runs, when not ours


class WorkerAttempts:
    """The attempt workers connected now, and the attempts each has in flight."""

    def __init__(self) -> None:
        self._workers: dict[int, _Worker] = {}
        self._numbers = itertools.count(1)

    async def connect(self, number: int, sock: socket.socket) -> None:
        """Worker `number` is started with the other end of `sock` as its standard input."""
        worker = _Worker(number, await Channel.over(sock))
        self._workers[number] = worker
        worker.reader = asyncio.create_task(self._read(worker), name=f"worker-{number}-answers")

    async def close(self) -> None:
        """Stop listening (every worker has stopped): anything still in flight is unknown."""
        for worker in list(self._workers.values()):
            worker.channel.close()
            if worker.reader is not None:
                worker.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.reader
            self._lost(worker, "the daemon stopped it")

    async def attempt(
        self,
        identity: str,
        trigger: Trigger,
        delivery: Delivery,
        options: Mapping[str, Any] | None,
    ) -> Attempted | None:
        ready = (w for w in self._workers.values() if w.ready)
        worker = min(ready, key=lambda w: len(w.calls), default=None)
        if worker is None:
            return None
        number = next(self._numbers)
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        worker.calls[number] = answer
        sent = time.time()
        worker.channel.send(Call(number, identity, trigger.name, delivery, options))
        # the worker cuts a hung plugin at `attempt_timeout`; one more margin for the way back
        limit = attempt_timeout(options or trigger.options) + TIMEOUT_MARGIN
        try:
            async with asyncio.timeout(limit):
                got = await asyncio.shield(answer)
        except TimeoutError:
            worker.calls.pop(number, None)
            error = (
                f"delivery worker {worker.number} did not answer within {limit:g}s: whether "
                "the attempt was made is unknown, so it is made again on the retry schedule"
            )
            log.error(error, delivery_id=delivery.id, event_id=delivery.event_id)
            outcome = Outcome.retry(error, breaker=False)
            return Attempted(outcome, sent, time.time() - sent, worker.number)
        if got.outcome is not None:
            if worker.other_identity:
                worker.other_identity = ""
                log.info("delivery worker runs this configuration again", worker=worker.number)
            return Attempted(got.outcome, got.started, got.duration, worker.number)
        if got.identity and got.identity != identity and got.identity != worker.other_identity:
            worker.other_identity = got.identity
            log.info(
                "delivery worker runs another configuration than the main process; its "
                "attempts are made here until it has reloaded",
                worker=worker.number,
                hint="a reload reaches the workers as SIGHUP once it has been applied here",
            )
        return None  # another configuration, or stopping: this process makes it

    async def _read(self, worker: _Worker) -> None:
        why = "it exited"
        try:
            while (answers := await worker.channel.receive()) is not None:
                for answer in answers:
                    if isinstance(answer, Ready):
                        worker.ready = True
                        log.info("delivery worker takes attempts", worker=worker.number)
                        continue
                    call = worker.calls.pop(answer.number, None)
                    if call is not None and not call.done():
                        call.set_result(answer)
        except Exception as exc:  # a bug on either side (FrameError): drop the worker
            why = f"its answers could not be read ({type(exc).__name__}: {exc})"
            log.error("delivery worker dropped", worker=worker.number, error=why)
        finally:
            worker.channel.close()
            if self._workers.get(worker.number) is worker:
                del self._workers[worker.number]
            self._lost(worker, why)

    def _lost(self, worker: _Worker, why: str) -> None:
        """Attempts in flight at a worker that is gone: sent or not, nobody knows."""
        calls, worker.calls = worker.calls, {}
        if calls:
            log.warning(
                "delivery worker gone with attempts in flight; each is tried again on its "
                "retry schedule",
                worker=worker.number,
                attempts=len(calls),
                why=why,
            )
        error = (
            f"delivery worker {worker.number} went away during the attempt ({why}): whether "
            "it was made is unknown, so it is made again on the retry schedule"
        )
        now = time.time()
        for number, call in calls.items():
            if not call.done():
                call.set_result(Answer(number, Outcome.retry(error, breaker=False), now, 0.0, ""))
