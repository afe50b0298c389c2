"""`[daemon] workers`: delivery workers beside the main process, on one real PostgreSQL.

A real `postbackd run` subprocess with ``workers = 2`` starts a worker process of its own; both
claim and deliver (the request log names the main process's node and the worker's ``.w2``),
each delivery once. The worker never outlives the daemon — SIGTERM or ``kill -9`` of the main
process —, a worker that dies is started again, and a reload to ``workers = 1`` stops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from postbackd.testing import PostbackdDaemon, WebhookReceiver, free_port
from tests.configs import event, webhook_config
from tests.integration.test_postgres_fleet import attempt_nodes, post_all
from tests.pg_fixtures import pg_cluster, pg_url

__all__ = ["pg_cluster", "pg_url"]


def daemon_with_workers(
    tmp_path: Path, url: str, receiver: WebhookReceiver, workers: int
) -> PostbackdDaemon:
    port = free_port()
    daemon = PostbackdDaemon(tmp_path / "conf", port)
    # one attempt in flight per process and destination, so a claim takes a few deliveries and
    # leaves the rest to the other process (SKIP LOCKED)
    extra = f'node = "pb"\nlease = "2s"\nworkers = {workers}\nper_destination = 1'
    daemon.write_files(webhook_config(receiver.url(), port=port, spool=url, daemon_extra=extra))
    return daemon


def logged_pids(daemon: PostbackdDaemon, message: str) -> list[int]:
    """The `pid` of every log line of the daemon (its workers' included) saying `message`."""
    pids = []
    for line in daemon.logs().splitlines():
        if f'"{message}"' in line:
            pids.append(int(json.loads(line)["pid"]))
    return pids


def worker_pids(daemon: PostbackdDaemon) -> list[int]:
    """The pids of the workers the daemon said it started, oldest first."""
    return logged_pids(daemon, "delivery worker started")


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie of an exited child does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


async def until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.1)


async def test_a_worker_shares_the_deliveries_and_stops_with_the_daemon(
    tmp_path: Path, pg_url: str, receiver: WebhookReceiver
) -> None:
    receiver.delay("/hook", 0.05)
    daemon = daemon_with_workers(tmp_path, pg_url, receiver, workers=2)
    await daemon.start(30)
    await until(lambda: logged_pids(daemon, "delivery worker ready"), "the worker ready", 30)
    ids = [f"w-{i}" for i in range(60)]
    await post_all(daemon, ids, orders=60)
    await receiver.wait_events(set(ids), timeout=60)
    await asyncio.sleep(0.5)  # a delivery made twice would arrive by now
    assert len(receiver.requests) == 60
    nodes = await attempt_nodes(daemon)
    assert set().union(*nodes.values()) == {"pb", "pb.w2"}, nodes
    status, config = await daemon.get("/v1/config")  # the worker is a live node too
    assert status == 200, config
    assert [n["node"] for n in config["nodes"]] == ["pb", "pb.w2"]
    assert config["nodes_warning"] is None  # one configuration

    (worker,) = worker_pids(daemon)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(30) == 0, daemon.logs()
    assert not alive(worker), "the worker outlived the daemon's stop"


async def test_a_worker_stops_when_its_daemon_is_killed(
    tmp_path: Path, pg_url: str, receiver: WebhookReceiver
) -> None:
    daemon = daemon_with_workers(tmp_path, pg_url, receiver, workers=2)
    await daemon.start(30)
    await until(lambda: len(worker_pids(daemon)) == 1, "one worker started")
    (worker,) = worker_pids(daemon)
    daemon.signal(signal.SIGKILL)
    await daemon.wait_exit(10)
    await until(lambda: not alive(worker), "the orphaned worker stopped", timeout=30)
    assert "the main process is gone: delivery worker stopping" in daemon.logs()


async def test_a_dead_worker_is_started_again_and_a_reload_can_stop_it(
    tmp_path: Path, pg_url: str, receiver: WebhookReceiver
) -> None:
    daemon = daemon_with_workers(tmp_path, pg_url, receiver, workers=2)
    await daemon.start(30)
    await until(lambda: len(worker_pids(daemon)) == 1, "one worker started")
    (first,) = worker_pids(daemon)
    os.kill(first, signal.SIGKILL)
    await until(lambda: len(worker_pids(daemon)) == 2, "the worker started again")
    assert "delivery worker exited; starting it again" in daemon.logs()
    second = worker_pids(daemon)[-1]
    await until(lambda: second in logged_pids(daemon, "delivery worker ready"), "new worker ready")

    status, _ = await daemon.post(event("after-restart", order="o-1"))
    assert status == 202
    await receiver.wait_events({"after-restart"}, timeout=30)

    config = daemon.conf_dir / "daemon.toml"
    config.write_text(config.read_text().replace("workers = 2", "workers = 1"))
    status, body = await daemon.request("POST", "/v1/reload")
    assert status == 200 and body["ok"], body
    await until(lambda: not alive(second), "the worker stopped after workers = 1")
    assert "delivery worker stopped" in daemon.logs()
    status, ready = await daemon.get("/readyz")
    assert status == 200, ready
