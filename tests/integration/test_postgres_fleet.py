"""A fleet on one real PostgreSQL: real `postbackd run` subprocesses sharing a fresh database.

Two nodes share the work and the request log; a node killed with SIGKILL (never restarted)
strands nothing — the other delivers what it had accepted once its leases run out; a database
restart mid-stream loses nothing (intake and /readyz answer 503 while it is down, the node
reconnects by itself and never exits).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from postbackd.testing import PostbackdDaemon, WebhookReceiver, free_port
from postbackd.testing.waiting import until
from tests.configs import event, webhook_config
from tests.pg_fixtures import PgCluster, pg_cluster, pg_url

__all__ = ["pg_cluster", "pg_url"]

LEASE = "2s"


@pytest.fixture
def fleet(tmp_path: Path, pg_url: str) -> Iterator[list[PostbackdDaemon]]:
    """Nodes are added with `add_node`; every one still running is stopped after the test."""
    nodes: list[PostbackdDaemon] = []
    yield nodes
    for node in nodes:
        node.stop()


def add_node(
    nodes: list[PostbackdDaemon],
    tmp_path: Path,
    url: str,
    receiver: WebhookReceiver,
    name: str,
    extra_trigger: str = "",
) -> PostbackdDaemon:
    port = free_port()
    daemon = PostbackdDaemon(tmp_path / f"conf-{name}", port)
    daemon.write_files(
        webhook_config(
            receiver.url(),
            port=port,
            spool=url,
            daemon_extra=f'node = "{name}"\nlease = "{LEASE}"',
            extra_trigger=extra_trigger,
        )
    )
    daemon.launch()
    nodes.append(daemon)
    return daemon


async def post_all(daemon: PostbackdDaemon, ids: list[str], orders: int = 1000) -> None:
    for index, event_id in enumerate(ids):
        status, body = await daemon.post(event(event_id, order=f"o-{index % orders}"))
        assert status == 202, body


async def all_done(daemon: PostbackdDaemon, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status, page = await daemon.get("/v1/deliveries?limit=1000")
        states = [d["state"] for d in page["deliveries"]] if status == 200 else []
        if states.count("done") == count:
            return
        assert time.monotonic() < deadline, f"not all {count} done in {timeout}s: {states}"
        await asyncio.sleep(0.2)


async def attempt_nodes(daemon: PostbackdDaemon) -> dict[str, set[str]]:
    """Delivery id → the nodes that made its attempts, from one node's request log."""
    status, page = await daemon.get("/v1/deliveries?limit=1000")
    assert status == 200, page
    nodes: dict[str, set[str]] = {}
    for summary in page["deliveries"]:
        status, detail = await daemon.get(f"/v1/deliveries/{summary['id']}")
        assert status == 200, detail
        nodes[summary["id"]] = {attempt["node"] for attempt in detail["attempts"]}
    return nodes


async def test_two_nodes_share_the_work_and_the_request_log(
    tmp_path: Path, pg_url: str, fleet: list[PostbackdDaemon], receiver: WebhookReceiver
) -> None:
    a = add_node(fleet, tmp_path, pg_url, receiver, "node-a")
    b = add_node(fleet, tmp_path, pg_url, receiver, "node-b")
    await asyncio.gather(a.wait_ready(30), b.wait_ready(30))
    ids_a = [f"a-{i}" for i in range(30)]
    ids_b = [f"b-{i}" for i in range(30)]
    await asyncio.gather(post_all(a, ids_a), post_all(b, ids_b))
    status, _ = await b.post(event("a-0", order="o-0"))  # accepted by A: a duplicate on B
    assert status == 202
    await receiver.wait_events({*ids_a, *ids_b}, timeout=30)
    await asyncio.sleep(0.5)  # anything delivered twice would arrive by now
    assert len(receiver.requests) == 60  # each delivery once, while both nodes live
    log_a, log_b = await attempt_nodes(a), await attempt_nodes(b)
    assert log_a == log_b and len(log_a) == 60  # one request log, seen from either node
    assert set().union(*log_a.values()) == {"node-a", "node-b"}


async def test_a_killed_node_strands_nothing(
    tmp_path: Path, pg_url: str, fleet: list[PostbackdDaemon], receiver: WebhookReceiver
) -> None:
    receiver.delay("/hook", 0.5)  # attempts in flight when the node dies
    a = add_node(fleet, tmp_path, pg_url, receiver, "node-a")
    b = add_node(fleet, tmp_path, pg_url, receiver, "node-b")
    await asyncio.gather(a.wait_ready(30), b.wait_ready(30))
    ids = [f"e-{i}" for i in range(40)]
    await post_all(a, ids)
    await receiver.wait_for(3, timeout=20)
    a.signal(signal.SIGKILL)  # never restarted
    assert await a.wait_exit(10) == -signal.SIGKILL
    await receiver.wait_events(set(ids), timeout=60)
    # what A was attempting when it died (sent, never recorded) goes again from B after the lease
    await all_done(b, 40, timeout=30)
    nodes = await attempt_nodes(b)
    assert len(nodes) == 40
    assert all("node-b" in made or made == {"node-a"} for made in nodes.values())
    assert "leases ran out" in b.logs()


# stops the cluster every PostgreSQL test of the run uses
@pytest.mark.serial
async def test_a_database_restart_loses_nothing_and_the_node_stays(
    tmp_path: Path,
    pg_url: str,
    pg_cluster: PgCluster,
    fleet: list[PostbackdDaemon],
    receiver: WebhookReceiver,
) -> None:
    node = add_node(fleet, tmp_path, pg_url, receiver, "node-a")
    await node.wait_ready(30)
    before = [f"before-{i}" for i in range(10)]
    await post_all(node, before)
    pg_cluster.stop()
    try:
        deadline = time.monotonic() + 20
        while (await node.get("/readyz"))[0] != 503:
            assert time.monotonic() < deadline, "/readyz stayed 200 with the database down"
            await asyncio.sleep(0.2)
        status, body = await node.post(event("during", order="o-x"))
        assert status == 503, body
        await asyncio.sleep(1)  # the node rides it out
        assert node.process is not None and node.process.poll() is None
    finally:
        pg_cluster.start()
    await node.wait_ready(60)
    after = [f"after-{i}" for i in range(10)]
    await post_all(node, after)
    await receiver.wait_events({*before, *after}, timeout=60)
    await all_done(node, 20, timeout=30)
    assert node.process is not None and node.process.poll() is None


async def test_ordered_statuses_posted_alternately_to_two_nodes_arrive_in_order(
    tmp_path: Path, pg_url: str, fleet: list[PostbackdDaemon], receiver: WebhookReceiver
) -> None:
    """Each order's statuses go to A, B, A, B…; the receiver is slow and refuses every other
    status once, so statuses are retried on either node — and still each order's arrive in the
    order they were posted (DESIGN §10: order holds fleet-wide)."""
    accepted: list[tuple[str, str]] = []  # (order, event id) of each request answered 200
    refused: set[str] = set()  # events whose first attempt was answered 503

    async def slow_and_flaky(request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        await asyncio.sleep(0.02)
        event_id = payload["eventId"]
        if int(event_id.split("-")[2]) % 2 == 0 and event_id not in refused:
            refused.add(event_id)  # every other status is refused once: retried, maybe on
            return web.Response(status=503, text="busy")  # the other node
        accepted.append((payload["orderId"], event_id))
        return web.Response(text="ok")

    receiver.handle("POST", "/hook", slow_and_flaky)
    a = add_node(fleet, tmp_path, pg_url, receiver, "node-a", extra_trigger="ordered = true")
    b = add_node(fleet, tmp_path, pg_url, receiver, "node-b", extra_trigger="ordered = true")
    await asyncio.gather(a.wait_ready(30), b.wait_ready(30))
    orders = [f"ord-{n}" for n in range(4)]
    statuses = ["created", "printed", "packed", "shipped", "delivered", "invoiced"]
    posted: dict[str, list[str]] = {order: [] for order in orders}
    turn = 0
    for step, status_name in enumerate(statuses):
        for order in orders:
            node = (a, b)[turn % 2]
            turn += 1
            event_id = f"{order}-{step}-{status_name}"
            status, body = await node.post(
                event(event_id, type_=f"order.{status_name}", order=order)
            )
            assert status == 202, body
            posted[order].append(event_id)
    total = len(orders) * len(statuses)
    await until(lambda: len(accepted) >= total, 60, f"{total} statuses delivered")
    await asyncio.sleep(0.5)  # a duplicate would arrive by now
    assert len(accepted) == total
    for order in orders:
        assert [e for o, e in accepted if o == order] == posted[order]
    made = await attempt_nodes(a)
    assert set().union(*made.values()) == {"node-a", "node-b"}  # both nodes delivered
