"""`[daemon] workers` with the SQLite spool: attempt workers beside the main process.

A real `postbackd run` subprocess with ``workers = 2`` on a SQLite spool starts one attempt
worker; the main process keeps the spool and sends it the attempts over a socket. Each test
checks what an operator relies on: every event delivered once and signed, the attempt log line
naming the worker, a worker killed mid-attempt loses nothing, the worker never outlives its
daemon, a reload reaches it, and a worker on another configuration never attempts with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from postbackd.testing import PostbackdDaemon, WebhookReceiver, free_port
from tests.configs import event, webhook_config
from tests.integration.test_postgres_fleet import post_all
from tests.integration.test_workers import alive, logged_pids, until, worker_pids

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # tests.configs.webhook_config's


def sqlite_daemon(tmp_path: Path, receiver: WebhookReceiver, workers: int = 2) -> PostbackdDaemon:
    port = free_port()
    daemon = PostbackdDaemon(tmp_path / "conf", port)
    spool = tmp_path / "spool.db"
    extra = f'node = "pb"\nworkers = {workers}'
    daemon.write_files(webhook_config(receiver.url(), port=port, spool=spool, daemon_extra=extra))
    return daemon


def attempt_lines(daemon: PostbackdDaemon) -> list[dict]:
    """The daemon's "delivery attempt" log lines (one per recorded attempt)."""
    lines = [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "delivery attempt"]


async def started_with_worker(daemon: PostbackdDaemon) -> int:
    await daemon.start(30)
    await until(lambda: logged_pids(daemon, "delivery worker ready"), "the worker ready", 30)
    (worker,) = worker_pids(daemon)
    return worker


async def test_the_worker_makes_the_attempts_and_each_arrives_once_signed(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    daemon = sqlite_daemon(tmp_path, receiver)
    worker = await started_with_worker(daemon)
    ids = [f"a-{i}" for i in range(80)]
    await post_all(daemon, ids, orders=80)
    await receiver.wait_events(set(ids), timeout=60)
    await asyncio.sleep(0.5)  # a delivery made twice would arrive by now
    assert len(receiver.requests) == 80
    for request in receiver.requests:  # raises if a signature is wrong
        Webhook(SECRET).verify(request.body, request.headers)
    await until(lambda: len(attempt_lines(daemon)) == 80, "80 attempts logged")
    made_by = {line.get("worker") for line in attempt_lines(daemon)}
    assert made_by == {2}, made_by  # the main process sent every attempt to its worker
    assert all(line["state"] == "done" for line in attempt_lines(daemon))

    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(30) == 0, daemon.logs()
    assert not alive(worker), "the worker outlived the daemon's stop"
    assert "delivery worker stopped" in daemon.logs()


async def test_the_worker_stops_when_its_daemon_is_killed(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    daemon = sqlite_daemon(tmp_path, receiver)
    worker = await started_with_worker(daemon)
    daemon.signal(signal.SIGKILL)
    await daemon.wait_exit(10)
    await until(lambda: not alive(worker), "the orphaned worker stopped", timeout=30)
    assert "the main process is gone: delivery worker stopping" in daemon.logs()


async def test_a_worker_killed_mid_attempt_loses_nothing(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    daemon = sqlite_daemon(tmp_path, receiver)
    worker = await started_with_worker(daemon)
    receiver.delay("/hook", 3.0)  # the first attempts hang at the receiver while we kill
    ids = [f"k-{i}" for i in range(5)]
    await post_all(daemon, ids, orders=5)
    await until(lambda: len(receiver.requests) >= 5, "the five attempts at the receiver")
    os.kill(worker, signal.SIGKILL)
    receiver.delay("/hook", 0.0)
    await until(lambda: len(worker_pids(daemon)) == 2, "the worker started again")
    await receiver.wait_events(set(ids), timeout=60)
    await until(
        lambda: sum(line["state"] == "done" for line in attempt_lines(daemon)) == 5,
        "all five recorded done",
    )
    lost = [line for line in attempt_lines(daemon) if line["outcome"] == "retry"]
    assert len(lost) == 5, lost
    assert all("went away during the attempt" in line["error"] for line in lost)
    assert "delivery worker gone with attempts in flight" in daemon.logs()
    status, ready = await daemon.get("/readyz")
    assert status == 200, ready


async def test_a_reload_reaches_the_worker(tmp_path: Path, receiver: WebhookReceiver) -> None:
    daemon = sqlite_daemon(tmp_path, receiver)
    await started_with_worker(daemon)
    acme = daemon.conf_dir / "acme.toml"
    acme.write_text(acme.read_text().replace("/hook", "/moved"))
    status, body = await daemon.request("POST", "/v1/reload")
    assert status == 200 and body["ok"], body
    await asyncio.sleep(1.0)  # the worker's own reload, after the SIGHUP
    status, _ = await daemon.post(event("after-reload"))
    assert status == 202
    await receiver.wait_events({"after-reload"}, timeout=30)
    (request,) = [r for r in receiver.requests if r.json()["eventId"] == "after-reload"]
    assert request.path == "/moved"
    await until(lambda: attempt_lines(daemon), "the attempt logged")
    assert attempt_lines(daemon)[-1].get("worker") == 2  # made by the worker, reloaded


async def test_a_worker_on_another_configuration_never_attempts_with_it(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """The main process rejects a reload (its listener's new address is taken) that the worker,
    which has no listener, would accept: told to reload anyway, the worker runs a configuration
    the daemon does not, and every attempt is made by the main process, with its own."""
    daemon = sqlite_daemon(tmp_path, receiver)
    worker = await started_with_worker(daemon)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        (daemon.conf_dir / "daemon.toml").write_text(
            (daemon.conf_dir / "daemon.toml")
            .read_text()
            .replace(f"127.0.0.1:{daemon.port}", f"127.0.0.1:{busy}")
        )
        acme = daemon.conf_dir / "acme.toml"
        acme.write_text(acme.read_text().replace("/hook", "/elsewhere"))
        status, body = await daemon.request("POST", "/v1/reload")
        assert status == 422 and not body["ok"], body
        os.kill(worker, signal.SIGHUP)  # as if the worker had reloaded on its own
        await until(lambda: "reload applied" in worker_log(daemon), "the worker reloaded")
        status, _ = await daemon.post(event("kept"))
        assert status == 202
        await receiver.wait_events({"kept"}, timeout=30)
    (request,) = [r for r in receiver.requests if r.json()["eventId"] == "kept"]
    assert request.path == "/hook"  # the configuration in force, not the worker's
    await until(lambda: attempt_lines(daemon), "the attempt logged")
    assert "worker" not in attempt_lines(daemon)[-1]  # made by the main process
    assert "delivery worker runs another configuration than the main process" in daemon.logs()


def worker_log(daemon: PostbackdDaemon) -> str:
    """The log lines worker 2 wrote (the daemon's log holds its workers' lines too)."""
    lines = [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]
    return "\n".join(line["event"] for line in lines if line.get("worker") == 2)
