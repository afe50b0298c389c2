"""The main process's side of its attempt workers, with the test playing the worker over a
real socket pair: attempts go only to a ready worker, a worker on another configuration makes
the main process attempt itself, and an attempt a worker took with it (it went away, it hung)
comes back as a failed attempt to retry — never lost, never counted against the receiver."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from postbackd import attempt
from postbackd.config import Trigger
from postbackd.generation import ConfigHolder, Plugins, load_generation
from postbackd.plugin import Outcome, OutcomeKind
from postbackd.testing import plugin_host
from postbackd.workers import remote
from postbackd.workers.remote import WorkerAttempts
from postbackd.workers.wire import Answer, Call, Channel, Ready
from tests.configs import webhook_config
from tests.workers.test_wire import delivery


@pytest.fixture
def trigger(tmp_path: Path) -> Trigger:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    files = webhook_config("http://127.0.0.1:9/hook", port=9, spool=tmp_path / "s.db")
    for name, text in files.items():
        (conf / name).write_text(text)
    plugins = Plugins(plugin_host(), ConfigHolder())
    plugins.build_deliveries({})
    return load_generation(conf, plugins, 1).config.triggers["acme-all"]


async def connected(attempts: WorkerAttempts, number: int = 2) -> Channel:
    ours, theirs = socket.socketpair()
    await attempts.connect(number, ours)
    return await Channel.over(theirs)


async def test_attempts_go_to_a_worker_only_once_it_is_ready(trigger: Trigger) -> None:
    attempts = WorkerAttempts()
    worker = await connected(attempts)
    assert await attempts.attempt("gen-1", trigger, delivery(), None) is None  # not ready yet
    await said_ready(attempts, worker)
    made = asyncio.ensure_future(attempts.attempt("gen-1", trigger, delivery(), None))
    (call,) = await asyncio.wait_for(worker.receive(), 5) or []
    assert isinstance(call, Call)
    assert (call.identity, call.trigger, call.delivery, call.options) == (
        "gen-1",
        "acme-all",
        delivery(),
        None,
    )
    worker.send(Answer(call.number, Outcome.ok(status=200), 100.0, 0.05))
    result = await asyncio.wait_for(made, 5)
    assert result is not None
    assert (result.outcome.status, result.started, result.duration, result.worker) == (
        200,
        100.0,
        0.05,
        2,
    )
    await attempts.close()
    worker.close()


async def said_ready(attempts: WorkerAttempts, worker: Channel) -> None:
    """The worker says it is ready; returns once the main side has read it."""
    worker.send(Ready(1))
    await worker.drain()
    for _ in range(400):
        await asyncio.sleep(0.005)
        if all(w.ready for w in attempts._workers.values()):
            return
    raise AssertionError("the main side did not read the worker's Ready")


async def ready_worker(attempts: WorkerAttempts) -> Channel:
    worker = await connected(attempts)
    await said_ready(attempts, worker)
    return worker


async def test_a_worker_on_another_configuration_leaves_the_attempt_here(
    trigger: Trigger,
) -> None:
    attempts = WorkerAttempts()
    worker = await ready_worker(attempts)
    made = asyncio.ensure_future(attempts.attempt("gen-1", trigger, delivery(), None))
    (call,) = await worker.receive() or []
    worker.send(Answer(call.number, None, identity="gen-0"))
    assert await made is None
    await attempts.close()
    worker.close()


async def test_a_worker_gone_mid_attempt_gives_a_retry_not_counted_against_the_receiver(
    trigger: Trigger,
) -> None:
    attempts = WorkerAttempts()
    worker = await ready_worker(attempts)
    made = asyncio.gather(
        *(attempts.attempt("gen-1", trigger, delivery(n), None) for n in range(3))
    )
    assert len(await worker.receive() or []) == 3
    worker.close()  # the worker dies with three attempts in flight
    results = await asyncio.wait_for(made, 5)
    for result in results:
        assert result is not None and result.outcome.kind is OutcomeKind.RETRY
        assert result.outcome.breaker is False
        assert "went away during the attempt" in (result.outcome.error or "")
    assert await attempts.attempt("gen-1", trigger, delivery(), None) is None  # none left
    await attempts.close()


async def test_a_worker_that_does_not_answer_gives_a_retry(
    trigger: Trigger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attempt, "TIMEOUT_MARGIN", 0.1)
    monkeypatch.setattr(remote, "TIMEOUT_MARGIN", 0.1)
    attempts = WorkerAttempts()
    worker = await ready_worker(attempts)
    result = await attempts.attempt("gen-1", trigger, delivery(), {"timeout": "0.1s"})
    assert result is not None and result.outcome.kind is OutcomeKind.RETRY
    assert "did not answer within 0.3s" in (result.outcome.error or "")
    assert result.outcome.breaker is False
    await attempts.close()
    worker.close()
