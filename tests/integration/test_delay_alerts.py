"""Delay alerts from silence through a real daemon: an ``[[sla]]`` timer started by
order.received fires an order.delayed postback to a real receiver when no order.shipped
follows in time, an order.shipped cancels it, and a timer survives ``kill -9`` and fires once.
"""

from __future__ import annotations

import asyncio
import copy
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from postbackd.samples import load_sample
from postbackd.sla import alert_id
from postbackd.testing import PostbackdDaemon, WebhookReceiver, daemon_files, free_port
from tests.pg_fixtures import pg_cluster, pg_url

__all__ = ["pg_cluster", "pg_url"]

WITHIN = 2.0  # seconds: short enough for a test, long enough to act before it runs out


def rule(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "ship-in-time",
        "after": "order.received",
        "expect": ["order.shipped"],
        "within": f"{WITHIN}s",
        "emit": "order.delayed",
        **overrides,
    }


def alert_daemon(
    factory: Callable[..., PostbackdDaemon], receiver: WebhookReceiver, **overrides: Any
) -> PostbackdDaemon:
    return factory(
        triggers=[
            {
                "name": "acme-delays",
                "events": ["order.delayed"],
                "template": "builtin:gelato-status-v2",
                "delivery": "webhook",
                "options": {"url": receiver.url("/delayed")},
            },
            {
                "name": "acme-status",
                "events": ["order.received", "order.shipped"],
                "delivery": "webhook",
                "options": {"url": receiver.url("/status")},
            },
        ],
        sla=[rule(**overrides)],
    )


def order_event(kind: str, order_id: str, event_id: str) -> dict[str, Any]:
    raw = copy.deepcopy(load_sample(kind))
    raw["id"] = event_id
    raw["data"]["orderId"] = order_id
    return raw


async def timers(daemon: PostbackdDaemon, state: str = "pending") -> list[dict[str, Any]]:
    status, body = await daemon.get(f"/v1/timers?state={state}")
    assert status == 200, body
    found: list[dict[str, Any]] = body["timers"]
    return found


async def test_silence_after_received_sends_one_delayed_postback(
    webhook_receiver: WebhookReceiver, postbackd_daemon: Callable[..., PostbackdDaemon]
) -> None:
    daemon = alert_daemon(postbackd_daemon, webhook_receiver)
    await daemon.start()
    started = time.monotonic()
    await daemon.submit(order_event("order.received", "order-late", "evt-received-late"))
    (pending,) = await timers(daemon)
    assert pending["rule"] == "ship-in-time" and pending["order_id"] == "order-late"
    assert pending["started_by"] == "evt-received-late"

    (alert,) = await webhook_receiver.wait_for(1, path="/delayed", timeout=15)
    assert time.monotonic() - started >= WITHIN - 0.1  # not before it was due
    body = alert.json()
    assert body["orderId"] == "order-late"
    assert body["message"].startswith("Order delayed: no order.shipped within 2s")
    (fired,) = await timers(daemon, "fired")
    assert fired["id"] == alert_id("ship-in-time", "acme", "order-late")
    assert fired["note"] == f"fired as order.delayed event {fired['id']}"
    assert await timers(daemon) == []
    delivered = await daemon.deliveries(event_type="order.delayed")
    assert len(delivered) == 1 and delivered[0]["event_id"] == fired["id"]
    assert 'postbackd_events_received_total{source="sla"} 1.0' in await daemon.metrics()
    await asyncio.sleep(WITHIN)  # nothing fires again
    assert len([r for r in webhook_receiver.requests if r.path == "/delayed"]) == 1


async def test_an_expected_event_cancels_the_timer(
    webhook_receiver: WebhookReceiver, postbackd_daemon: Callable[..., PostbackdDaemon]
) -> None:
    daemon = alert_daemon(postbackd_daemon, webhook_receiver)
    await daemon.start()
    await daemon.submit(order_event("order.received", "order-on-time", "evt-received"))
    assert len(await timers(daemon)) == 1
    await daemon.submit(order_event("order.shipped", "order-on-time", "evt-shipped"))
    (cancelled,) = await timers(daemon, "cancelled")
    assert cancelled["note"] == "cancelled by order.shipped event evt-shipped"
    assert await timers(daemon) == []
    await webhook_receiver.wait_for(2, path="/status")
    await asyncio.sleep(WITHIN + 1.0)  # past the due time: nothing fires
    assert [r.path for r in webhook_receiver.requests].count("/delayed") == 0
    assert await timers(daemon, "fired") == []


async def test_shipped_before_received_starts_no_timer(
    webhook_receiver: WebhookReceiver, postbackd_daemon: Callable[..., PostbackdDaemon]
) -> None:
    daemon = alert_daemon(postbackd_daemon, webhook_receiver)
    await daemon.start()
    await daemon.submit(order_event("order.shipped", "order-out-of-order", "evt-shipped-first"))
    await daemon.submit(order_event("order.received", "order-out-of-order", "evt-received-2nd"))
    assert await timers(daemon, "all") == []


async def test_a_timer_survives_kill_9_and_fires_once_after_restart(
    webhook_receiver: WebhookReceiver, postbackd_daemon: Callable[..., PostbackdDaemon]
) -> None:
    daemon = alert_daemon(postbackd_daemon, webhook_receiver, within="3s")
    await daemon.start()
    await daemon.submit(order_event("order.received", "order-crash", "evt-received-crash"))
    daemon.signal(signal.SIGKILL)
    assert await daemon.wait_exit() == -signal.SIGKILL

    listed = daemon.command("queue", "timers")  # the operator sees it while the daemon is down
    assert listed.returncode == 0, listed.stderr
    assert "ship-in-time" in listed.stdout and "order-crash" in listed.stdout
    assert "evt-received-crash" in listed.stdout and "1 timer" in listed.stdout
    stats = daemon.command("queue", "stats")
    assert stats.returncode == 0 and "delay timers pending       1" in stats.stdout, stats.stdout

    await daemon.start()
    (alert,) = await webhook_receiver.wait_for(1, path="/delayed", timeout=15)
    assert alert.json()["orderId"] == "order-crash"
    await asyncio.sleep(1.0)
    assert [r.path for r in webhook_receiver.requests].count("/delayed") == 1
    (fired,) = await timers(daemon, "fired")
    assert fired["order_id"] == "order-crash"
    requests = daemon.command("requests", "timers")
    assert requests.returncode == 0 and "no pending delay timers" in requests.stdout


async def test_hostile_orders_start_timers_and_the_daemon_stays_ready(
    webhook_receiver: WebhookReceiver, postbackd_daemon: Callable[..., PostbackdDaemon]
) -> None:
    """Order ids no rule author expects — SQL, NUL, a 50 kB id, numbers, objects — in one
    batch with the expected event of another: every event is stored, each order gets its one
    timer, and the daemon answers ready throughout."""
    daemon = alert_daemon(postbackd_daemon, webhook_receiver, within="1h")
    await daemon.start()
    hostile: list[Any] = [
        "'; DROP TABLE sla_timers; --",
        "nul\u0000in the middle",
        "x" * 50_000,
        "🚚" * 100,
        12345,
        {"nested": ["object"]},
        " ",
    ]
    batch = [
        order_event("order.received", order_id, f"evt-hostile-{index}")
        for index, order_id in enumerate(hostile)
    ]
    batch.append(order_event("order.shipped", "'; DROP TABLE sla_timers; --", "evt-ship-sql"))
    batch.append(batch[0])  # the same event twice: one timer
    await daemon.submit(*batch)
    status, ready = await daemon.get("/readyz")
    assert status == 200, ready
    pending = await timers(daemon)
    assert len(pending) == len(hostile) - 1  # the SQL-named order shipped in the same batch
    gauge = f"postbackd_sla_timers_pending {float(len(pending))}"
    assert gauge in await daemon.metrics()
    assert "x" * 50_000 in {timer["order_id"] for timer in pending}
    finished = await daemon.wait_for_deliveries(len(hostile) + 1, trigger="acme-status")
    assert {d["state"] for d in finished} == {"done"}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[list[PostbackdDaemon]]:
    nodes: list[PostbackdDaemon] = []
    yield nodes
    for node in nodes:
        node.stop()


async def test_a_fleet_fires_each_timer_once(
    tmp_path: Path, pg_url: str, webhook_receiver: WebhookReceiver, fleet: list[PostbackdDaemon]
) -> None:
    """Two nodes on one PostgreSQL database, each starting timers for half the orders, all
    due at about the same moment: both claim, and every order gets exactly one alert."""
    for name in ("node-a", "node-b"):
        port = free_port()
        node = PostbackdDaemon(tmp_path / f"conf-{name}", port)
        node.write(
            "postbackd.toml",
            daemon_files(
                port=port,
                spool=pg_url,  # type: ignore[arg-type]  # a database URL is a spool too
                daemon={"node": name, "lease": "2s"},
                triggers=[
                    {
                        "name": "acme-delays",
                        "events": ["order.delayed"],
                        "delivery": "webhook",
                        "options": {"url": webhook_receiver.url("/delayed")},
                    }
                ],
                sla=[rule()],
            ),
        )
        node.launch()
        fleet.append(node)
    for node in fleet:
        await node.wait_ready()
    orders = [f"fleet-order-{index}" for index in range(40)]
    for index, order_id in enumerate(orders):
        event = order_event("order.received", order_id, f"evt-fleet-{index}")
        await fleet[index % 2].submit(event)
    alerts = await webhook_receiver.wait_for(len(orders), path="/delayed", timeout=20)
    await asyncio.sleep(1.0)  # a second firing would have arrived by now
    alerts = [r for r in webhook_receiver.requests if r.path == "/delayed"]
    assert sorted(r.json()["orderId"] for r in alerts) == sorted(orders)
    fired = await timers(fleet[0], "fired")
    assert len(fired) == len(orders)
    logs = "".join(node.logs() for node in fleet)
    assert logs.count('"delay alert fired"') == len(orders)


async def config_status(daemon: PostbackdDaemon, ready: Callable[[dict[str, Any]], bool]) -> Any:
    deadline = time.monotonic() + 15
    while True:
        status, body = await daemon.get("/v1/config")
        assert status == 200, body
        if ready(body):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def test_rules_reload_live_a_broken_one_is_refused_a_removed_one_stops_its_alerts(
    webhook_receiver: WebhookReceiver, postbackd_daemon: Callable[..., PostbackdDaemon]
) -> None:
    daemon = alert_daemon(postbackd_daemon, webhook_receiver, within="3s")
    await daemon.start()
    rules = daemon.conf_dir / "postbackd.toml"
    written = rules.read_text()
    first = (await config_status(daemon, lambda c: True))["generation"]

    broken = daemon.conf_dir / "broken-sla.toml"
    broken.write_text(
        '[[sla]]\nname = "typo"\nafter = "order.recieved"\nexpect = ["order.shipped"]\n'
        'within = "soon"\nemit = "order.delayed"\n'
    )
    refused = await config_status(daemon, lambda c: c["last_error"] is not None)
    assert refused["generation"] == first
    assert f"{broken}:3:" in refused["last_error"] and f"{broken}:5:" in refused["last_error"]
    broken.unlink()
    await config_status(daemon, lambda c: c["last_error"] is None and c["generation"] > first)

    await daemon.submit(order_event("order.received", "order-rule-gone", "evt-rule-gone"))
    assert len(await timers(daemon)) == 1
    rules.write_text(written.replace("[[sla]]", "[[removed]]").split("[[removed]]")[0])
    await config_status(daemon, lambda c: c["generation"] > first + 1)
    await asyncio.sleep(3.5)  # past the due time
    (dropped,) = await config_status_timers(daemon, "cancelled")
    assert dropped["note"] == "rule 'ship-in-time' is no longer in the configuration"
    assert [r.path for r in webhook_receiver.requests].count("/delayed") == 0
    assert "delay timer dropped: its [[sla]] rule was removed" in daemon.logs()


async def config_status_timers(daemon: PostbackdDaemon, state: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while not (found := await timers(daemon, state)):
        assert time.monotonic() < deadline, f"no {state} timer"
        await asyncio.sleep(0.1)
    return found


async def test_hostile_timer_queries_are_refused_and_the_daemon_stays_ready(
    webhook_receiver: WebhookReceiver, postbackd_daemon: Callable[..., PostbackdDaemon]
) -> None:
    daemon = alert_daemon(postbackd_daemon, webhook_receiver)
    await daemon.start()
    for query, field in (
        ("state=done", "state"),
        ("state=%00", "state"),
        ("state=" + "p" * 5_000, "state"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=99999999999999999999999", None),
    ):
        status, body = await daemon.get(f"/v1/timers?{query}")
        if field is None:  # a huge limit is capped, not an error
            assert status == 200 and body == {"timers": []}, body
        else:
            assert status == 400 and body["field"] == field, (query, body)
    status, ready = await daemon.get("/readyz")
    assert status == 200, ready
