"""A fleet whose nodes run different configurations: real daemons on one real PostgreSQL.

Node A has trigger ``to-t``; node B drops it by a reload while deliveries of it that B accepted
wait for a retry. Nothing is cancelled: A delivers them (B never claims them again). Only once A
drops the trigger too — no live node has it — are its deliveries cancelled, with the reason.
Both nodes' heartbeats are listed by ``GET /v1/config`` and the UI overview on either node,
with a warning while their configurations differ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from postbackd.testing import PostbackdDaemon, WebhookReceiver, free_port
from tests.configs import event
from tests.pg_fixtures import pg_cluster, pg_url

__all__ = ["pg_cluster", "pg_url"]

RETRIES = ", ".join(['"400ms"'] * 60)  # deliveries of /t wait for a retry, never die meanwhile


def node_files(
    receiver: WebhookReceiver, port: int, url: str, name: str, with_t: bool
) -> dict[str, str]:
    trigger_t = f"""
[[trigger]]
name = "to-t"
customer = "acme"
events = ["order.shipped"]
template = "builtin:order-status-json"
delivery = "webhook"
retry_schedule = [{RETRIES}]
[trigger.options]
url = "{receiver.url("/t")}"
"""
    return {
        "daemon.toml": f"""
[daemon]
spool = "{url}"
allow_private_destinations = true
grace = "2s"
node = "{name}"
lease = "2s"

[sources.http]
listen = "127.0.0.1:{port}"
""",
        "acme.toml": f"""
[[customer]]
id = "acme"
name = "Acme Prints"

[[trigger]]
name = "to-u"
customer = "acme"
events = ["order.*"]
template = "builtin:order-status-json"
delivery = "webhook"
[trigger.options]
url = "{receiver.url("/u")}"
{trigger_t if with_t else ""}
""",
    }


class Node:
    """One daemon of the fleet and how to change its configuration."""

    def __init__(self, tmp_path: Path, receiver: WebhookReceiver, url: str, name: str) -> None:
        self.name, self.receiver, self.url = name, receiver, url
        self.daemon = PostbackdDaemon(tmp_path / f"conf-{name}", free_port())

    def configure(self, with_t: bool) -> None:
        self.daemon.write_files(
            node_files(self.receiver, self.daemon.port, self.url, self.name, with_t)
        )

    async def reload_without_t(self) -> None:
        before = (await self.config())["generation"]
        self.configure(with_t=False)  # the watcher reloads it
        await wait_for(lambda: self.generation_after(before), 20, f"{self.name} reloaded")

    async def generation_after(self, before: int) -> bool:
        return bool((await self.config())["generation"] > before)

    async def config(self) -> dict[str, Any]:
        status, body = await self.daemon.get("/v1/config")
        assert status == 200, body
        return dict(body)


@pytest.fixture
def nodes(tmp_path: Path, pg_url: str, receiver: WebhookReceiver) -> Iterator[list[Node]]:
    made = [Node(tmp_path, receiver, pg_url, name) for name in ("node-a", "node-b")]
    yield made
    for node in made:
        node.daemon.stop()


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.1)


async def deliveries(daemon: PostbackdDaemon, **query: str) -> list[dict[str, Any]]:
    params = "&".join(f"{key}={value}" for key, value in query.items())
    status, body = await daemon.get(f"/v1/deliveries?limit=1000&{params}")
    assert status == 200, body
    return list(body["deliveries"])


async def attempts(daemon: PostbackdDaemon, delivery_id: str) -> list[dict[str, Any]]:
    status, body = await daemon.get(f"/v1/deliveries/{delivery_id}")
    assert status == 200, body
    return list(body["attempts"])


async def test_skew_leaves_work_to_the_node_that_knows_it_and_cancels_only_when_none_does(
    nodes: list[Node], receiver: WebhookReceiver
) -> None:
    a, b = nodes
    a.configure(with_t=True)
    b.configure(with_t=True)
    a.daemon.launch()
    b.daemon.launch()
    await asyncio.gather(a.daemon.wait_ready(30), b.daemon.wait_ready(30))
    receiver.respond("/t", 503)  # every attempt of to-t fails until B has dropped it

    on_b = [f"b-{i}" for i in range(6)]
    for event_id in on_b:
        status, body = await b.daemon.post(event(event_id, order=f"o-{event_id}"))
        assert status == 202, body
    await receiver.wait_for(6, path="/t", timeout=20)  # each tried once: now waiting to retry
    await b.reload_without_t()
    receiver.respond("/t", 200)

    async def t_done() -> bool:
        return len(await deliveries(a.daemon, trigger="to-t", state="done")) == 6

    await wait_for(t_done, 30, "node A delivered the deliveries of to-t that B accepted")
    assert await deliveries(a.daemon, state="cancelled") == []
    for delivery in await deliveries(b.daemon, trigger="to-t"):
        made = await attempts(b.daemon, delivery["id"])
        succeeded = [attempt["node"] for attempt in made if attempt["status"] == 200]
        assert succeeded == ["node-a"], made  # B no longer claims what it does not know
    assert "was removed" not in b.daemon.logs()

    # both nodes are listed, on either node, with the skew warned about
    for node in (a, b):
        config = await node.config()
        assert [n["node"] for n in config["nodes"]] == ["node-a", "node-b"]
        assert "different configurations" in config["nodes_warning"]
        by_name = {n["node"]: n for n in config["nodes"]}
        assert "to-t" in by_name["node-a"]["triggers"]
        assert "to-t" not in by_name["node-b"]["triggers"]
        assert by_name[node.name]["fingerprint"] == config["fingerprint"]
    status, page = await b.daemon.get("/ui/")  # the overview, rendered by the daemon
    assert status == 200, page
    assert "node-a" in page and "node-b (this node)" in page
    assert "different configurations" in page

    # A drops it too: no live node has it now, so what is left of it is cancelled
    receiver.respond("/t", 503)
    on_a = [f"a-{i}" for i in range(3)]
    for event_id in on_a:
        status, body = await a.daemon.post(event(event_id, order=f"o-{event_id}"))
        assert status == 202, body
    await receiver.wait_for(6 + 6 + 3, path="/t", timeout=20)
    await a.reload_without_t()

    async def t_cancelled() -> bool:
        return len(await deliveries(b.daemon, trigger="to-t", state="cancelled")) == 3

    await wait_for(t_cancelled, 20, "the deliveries of to-t cancelled once no node has it")
    for delivery in await deliveries(b.daemon, trigger="to-t", state="cancelled"):
        # from the reload's sync ("trigger to-t …") or an attempt claimed before it ("'to-t'")
        assert "to-t" in delivery["last_error"]
        assert "was removed from the configuration" in delivery["last_error"]
        assert delivery["event_id"] in on_a
    assert len(await deliveries(a.daemon, trigger="to-u", state="done")) == 9
    config = await a.config()
    assert config["nodes_warning"] is None  # the same tables now; node-local ones may differ
    assert len({n["fingerprint"] for n in config["nodes"]}) == 1


async def test_a_node_that_stops_leaves_the_list(nodes: list[Node]) -> None:
    a, b = nodes
    a.configure(with_t=True)
    b.configure(with_t=True)
    a.daemon.launch()
    b.daemon.launch()
    await asyncio.gather(a.daemon.wait_ready(30), b.daemon.wait_ready(30))
    config = await a.config()
    assert [n["node"] for n in config["nodes"]] == ["node-a", "node-b"]
    assert config["nodes_warning"] is None
    assert all(n["generation"] == 1 for n in config["nodes"])
    b.daemon.stop()

    async def only_a() -> bool:
        return [n["node"] for n in (await a.config())["nodes"]] == ["node-a"]

    await wait_for(only_a, 10, "a node stopped cleanly leaves the live list at once")


async def test_a_hostile_heartbeat_row_is_shown_as_text_and_the_node_stays_ready(
    nodes: list[Node], receiver: WebhookReceiver
) -> None:
    """Anyone who can write the database can write a heartbeat: markup in every text column
    and 20,000 trigger names. The API and the UI show it as text; the node stays ready and
    keeps delivering."""
    a, _ = nodes
    a.configure(with_t=True)
    a.daemon.launch()
    await a.daemon.wait_ready(30)
    conn = await asyncpg.connect(a.url)
    try:
        await conn.execute(
            "INSERT INTO nodes (node, generation, fingerprint, started_at, last_seen, "
            "live_until, triggers, active_triggers) VALUES ($1, -1, $2, 'NaN', 1e300, "
            "extract(epoch FROM now()) + 600, $3, '{}')",
            "<img src=x onerror=alert(1)>",
            '"><script>alert(2)</script>',
            [f"<b>t{i}</b>" for i in range(20_000)],
        )
    finally:
        await conn.close()
    config = await a.config()
    rogue = next(n for n in config["nodes"] if n["node"].startswith("<img"))
    assert (
        len(rogue["triggers"]) == 20_000 and "different configurations" in config["nodes_warning"]
    )
    status, page = await a.daemon.get("/ui/")
    assert status == 200, page
    assert "<img src=x" not in page and "<script>alert(2)" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    status, body = await a.daemon.post(event("after-rogue", order="o-r"))
    assert status == 202, body
    await receiver.wait_for(1, path="/u", timeout=20)
    assert (await a.daemon.get("/readyz"))[0] == 200
