"""Operational alerts end to end: a real daemon, a real webhook receiver for the customer's
postbacks and the operator's alerts, aiosmtpd for alert emails, RabbitMQ for a source that
goes down and comes back.

Each test routes ``postbackd.*`` with an ordinary trigger of the ``[alerts] customer`` and
checks the promise of one notification per episode.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from postbackd.testing import PostbackdDaemon, WebhookReceiver, daemon_files, free_port
from postbackd.testing.waiting import until
from tests.configs import event
from tests.deliveries.email.smtp_fixtures import smtp_server_factory
from tests.sources.amqp.rabbitmq_fixtures import Broker, queue_name, rabbitmq

__all__ = ["queue_name", "rabbitmq", "smtp_server_factory"]

FAST = ["300ms"] * 30  # the customer's postbacks stay pending while their receiver is down


@pytest.fixture
def ops() -> Iterator[WebhookReceiver]:
    """The operator's receiver of alerts: a destination of its own (behind the same breaker
    as the customer's receiver, the alert would wait for the very recovery it announces)."""
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


def ops_webhook(receiver: WebhookReceiver) -> dict[str, Any]:
    return {
        "name": "ops-alerts",
        "customer": "postbackd",
        "events": ["postbackd.*"],
        "template": "builtin:alert-json",
        "delivery": "webhook",
        "retry_schedule": ["200ms"],
        "options": {"url": receiver.url("/ops")},
    }


def alerting_daemon(
    tmp_path: Path,
    *,
    alerts: dict[str, Any],
    triggers: list[dict[str, Any]],
    daemon: dict[str, Any] | None = None,
    sources: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> PostbackdDaemon:
    port = free_port()
    made = PostbackdDaemon(tmp_path / "conf.d", port)
    files = daemon_files(
        port=port,
        spool=tmp_path / "spool.db",
        customers=("acme", "postbackd"),
        triggers=triggers,
        daemon=daemon,
        sources=sources,
    )
    made.write("postbackd.toml", {**files, "alerts": alerts, **(extra or {})})
    return made


def alerts_received(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.requests if r.path == "/ops"]


def of_type(receiver: WebhookReceiver, alert: str) -> list[dict[str, Any]]:
    return [a for a in alerts_received(receiver) if a["alert"] == alert]


async def test_a_failing_destination_is_told_once_and_its_recovery_once(
    tmp_path, webhook_receiver, ops
):
    webhook_receiver.respond("/acme", 500)
    daemon = alerting_daemon(
        tmp_path,
        alerts={"destination_failing_after": "2s"},
        daemon={"breaker_failures": 2, "breaker_cooldown": "1s"},
        triggers=[
            {
                "delivery": "webhook",
                "retry_schedule": FAST,
                "options": {"url": webhook_receiver.url("/acme")},
            },
            ops_webhook(ops),
        ],
    )
    try:
        await daemon.start()
        await daemon.submit(*(event(f"evt-{n}", order=f"o-{n}") for n in range(4)))
        await until(lambda: of_type(ops, "destination_failing"), 20, "destination_failing")
        (failing,) = of_type(ops, "destination_failing")
        destination = f"http://127.0.0.1:{webhook_receiver.port}"
        assert failing["type"] == "postbackd.destination_failing"
        assert failing["status"] == "firing"
        assert failing["details"]["destination"] == destination
        assert failing["details"]["triggers"] == ["trigger-0"]
        assert failing["details"]["customers"] == ["acme"]
        assert failing["details"]["failingForSeconds"] >= 2
        assert "HTTP 500" in failing["details"]["lastError"]
        assert failing["eventId"] == f"postbackd:destination_failing:{failing['episode']}"
        await asyncio.sleep(1.5)  # still failing, probes failing: nothing more to say
        assert len(of_type(ops, "destination_failing")) == 1

        webhook_receiver.respond("/acme", 200)
        await until(lambda: of_type(ops, "destination_recovered"), 30, "recovered")
        await daemon.wait_for_deliveries(4, states=["done"], timeout=30, customer="acme")
        await asyncio.sleep(1)
        assert len(of_type(ops, "destination_failing")) == 1
        (recovered,) = of_type(ops, "destination_recovered")
        assert recovered["status"] == "resolved"
        assert recovered["episode"] == failing["episode"]
        assert recovered["details"]["destination"] == destination
        alerts = await daemon.deliveries(customer="postbackd")
        assert sorted(d["state"] for d in alerts) == ["done", "done"]
        assert '"alert"' in daemon.logs() and "postbackd.destination_failing" in daemon.logs()
        metrics = await daemon.metrics()
        for kind in ("destination_failing", "destination_recovered"):
            assert f'alerts_total{{outcome="stored",type="postbackd.{kind}"}} 1.0' in metrics
    finally:
        daemon.stop()


async def test_dead_deliveries_of_a_window_are_one_alert_and_a_dead_alert_raises_none(
    tmp_path, webhook_receiver, ops
):
    """Three postbacks die within the window: one alert names them. The alert's own delivery
    dies too (410): no alert about it, however long we wait — an alert never loops."""
    webhook_receiver.respond("/acme", 410)
    ops.respond("/ops", 410)
    daemon = alerting_daemon(
        tmp_path,
        alerts={"delivery_dead_window": "1s"},
        daemon={"breaker_failures": 0},
        triggers=[
            {
                "delivery": "webhook",
                "options": {"url": webhook_receiver.url("/acme")},
            },
            ops_webhook(ops),
        ],
    )
    try:
        await daemon.start()
        await daemon.submit(*(event(f"evt-{n}", order=f"o-{n}") for n in range(3)))
        dead = await daemon.wait_for_deliveries(3, states=["dead"], customer="acme")
        await until(lambda: alerts_received(ops), 20, "the delivery_dead alert")
        (alert,) = alerts_received(ops)
        assert alert["type"] == "postbackd.delivery_dead"
        assert alert["details"]["count"] == 3
        assert alert["details"]["more"] == 0
        listed = alert["details"]["deliveries"]
        assert {d["deliveryId"] for d in listed} == {d["id"] for d in dead}
        assert {d["eventId"] for d in listed} == {"evt-0", "evt-1", "evt-2"}
        assert all(d["error"].startswith("410 Gone") for d in listed)
        (alert_delivery,) = await daemon.wait_for_deliveries(
            1, states=["dead"], customer="postbackd"
        )
        assert alert_delivery["trigger"] == "ops-alerts"
        await asyncio.sleep(3)  # more windows: an alert about the alert would be here
        assert len(alerts_received(ops)) == 1
        assert len(await daemon.deliveries(customer="postbackd")) == 1
        assert "alert delivery dead; no alert about it" in daemon.logs()
        assert (await daemon.get("/readyz"))[0] == 200
    finally:
        daemon.stop()


SMTP_TABLE = """
[smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
from_address = "postbacks@print.example"
timeout = "5s"
"""


async def test_a_rejected_reload_is_mailed_once_with_the_builtin_email(
    tmp_path, smtp_server_factory
):
    server = smtp_server_factory()
    daemon = alerting_daemon(
        tmp_path,
        alerts={},
        triggers=[
            {"delivery": "webhook", "options": {"url": "http://127.0.0.1:9/never"}},
            {
                "name": "ops-mail",
                "customer": "postbackd",
                "events": ["postbackd.reload_rejected"],
                "template": "builtin:alert-email",
                "delivery": "email",
                "retry_schedule": ["300ms"],
                "options": {"to": "Ops <ops@print.example>"},
            },
        ],
    )
    daemon.write("smtp.toml", SMTP_TABLE.format(port=server.port))
    try:
        await daemon.start()
        broken = daemon.write(
            "broken.toml",
            '[[trigger]]\nname = "acme-typo"\ncustomer = "acme"\nevents = ["order.shipped"]\n'
            'template = "acme-shiped"\ndelivery = "webhook"\n'
            '[trigger.options]\nurl = "http://127.0.0.1:9/x"\n',
        )
        await until(lambda: server.received, 20, "the reload_rejected mail")
        (mail,) = server.received
        message = mail.message()
        assert mail.rcpt_tos == ("ops@print.example",)
        assert message["Subject"].startswith("[postbackd ")
        assert "configuration reload rejected (1 error)" in message["Subject"]
        body = message.get_content()
        assert f"{broken}:5" in body or "broken.toml:5" in body, body
        assert "acme-shiped" in body
        assert "Alert:    postbackd.reload_rejected (firing)" in body
        assert "The running configuration stays in force" in body

        daemon.signal(signal.SIGHUP)  # the same broken file again: the same episode
        await until(lambda: "event duplicate" in daemon.logs(), 20, "the same alert again")
        assert daemon.logs().count("reload rejected; the running configuration stays") >= 2
        assert len(server.received) == 1

        broken.write_text(broken.read_text().replace('"acme-shiped"', '"builtin:nope"'))
        await until(lambda: len(server.received) == 2, 20, "a new error: a new mail")
        assert "builtin:nope" in server.received[1].message().get_content()
    finally:
        daemon.stop()


async def test_a_source_down_and_back_is_told_once_each(
    tmp_path, ops, rabbitmq: Broker, queue_name: str
):
    """The AMQP source's queue does not exist: it cannot consume (down). Once the queue is
    declared it consumes again (back)."""
    daemon = alerting_daemon(
        tmp_path,
        alerts={"source_down_after": "1s"},
        sources={"amqp": {"url": rabbitmq.url, "queue": queue_name, "reconnect_interval": "200ms"}},
        triggers=[ops_webhook(ops)],
    )
    connection = await aio_pika.connect(rabbitmq.url, timeout=10)
    try:
        daemon.launch()
        await until(lambda: of_type(ops, "source_down"), 30, "source_down")
        (down,) = of_type(ops, "source_down")
        assert down["details"]["source"] == "amqp"
        assert "does not exist" in down["details"]["error"], down
        assert "guest:guest" not in json.dumps(down)

        channel = await connection.channel()
        await channel.declare_queue(queue_name, durable=True)
        await until(lambda: of_type(ops, "source_recovered"), 60, "recovered")
        await daemon.wait_ready()
        (back,) = of_type(ops, "source_recovered")
        assert back["episode"] == down["episode"]
        assert back["details"]["removed"] is False
        await asyncio.sleep(1)
        assert [a["alert"] for a in alerts_received(ops)] == [
            "source_down",
            "source_recovered",
        ]
    finally:
        daemon.stop()
        channel = await connection.channel()
        await channel.queue_delete(queue_name, if_unused=False, if_empty=False)
        await connection.close()


async def test_forged_alerts_are_refused_and_hostile_errors_render_safely(
    tmp_path, webhook_receiver, ops
):
    """DESIGN §9 for the new input paths: no client may send a postbackd.* event or claim an
    alert's id (which would silence the real alert); a configuration error full of hostile
    text reaches the operator as valid JSON, with the template syntax in it left unrendered;
    a flood of dead deliveries is one bounded alert. The daemon stays ready throughout."""
    webhook_receiver.respond("/acme", 410)
    daemon = alerting_daemon(
        tmp_path,
        alerts={"delivery_dead_window": "2s"},
        daemon={"breaker_failures": 0},
        triggers=[
            {"delivery": "webhook", "options": {"url": webhook_receiver.url("/acme")}},
            ops_webhook(ops),
        ],
    )
    try:
        await daemon.start()
        forged = {**event("evt-forged"), "type": "postbackd.destination_failing"}
        status, answer = await daemon.post(forged)
        assert (status, answer["field"]) == (400, "type")
        assert "reserved" in answer["error"]
        status, answer = await daemon.post([event("evt-ok"), {**event("x"), "type": "PostBackD.x"}])
        assert (status, answer["field"]) == (400, "[1].type")
        pre_empt = event("postbackd:reload_rejected:g1-0123456789abcdef")
        status, answer = await daemon.post(pre_empt)
        assert (status, answer["field"]) == (400, "id")
        assert await daemon.deliveries() == []  # the batch was all-or-nothing: nothing stored

        hostile = 'x"}{\\u0000 {{ 7*7 }} {% raw %} <script>\u202e\u0085 ' + "é" * 3000
        daemon.write(
            "hostile.toml",
            '[[trigger]]\nname = "hostile"\ncustomer = "acme"\nevents = ["order.shipped"]\n'
            f'template = {json.dumps(hostile)}\ndelivery = "webhook"\n'
            '[trigger.options]\nurl = "http://127.0.0.1:9/x"\n',
        )
        await until(lambda: of_type(ops, "reload_rejected"), 20, "the reload_rejected alert")
        (rejected,) = of_type(ops, "reload_rejected")  # valid JSON: it parsed
        errors = rejected["details"]["errors"]
        assert errors and all(len(e) <= 500 for e in errors)
        assert "hostile.toml:5" in errors[0]
        assert "{{ 7*7 }}" in errors[0]  # quoted as text, never rendered
        assert errors[0].endswith("…")  # 3,000 characters of it: clipped
        (daemon.conf_dir / "hostile.toml").unlink()

        await daemon.submit(*(event(f"evt-{n}", order=f"o-{n}") for n in range(120)))
        await daemon.wait_for_deliveries(120, states=["dead"], customer="acme", timeout=60)
        await until(
            lambda: sum(b["details"]["count"] for b in of_type(ops, "delivery_dead")) == 120,
            20,
            "the delivery_dead alerts naming all 120",
        )
        batches = of_type(ops, "delivery_dead")
        assert len(batches) <= 3  # one per window, not one per delivery
        assert all(len(b["details"]["deliveries"]) <= 50 for b in batches)
        assert (await daemon.get("/readyz"))[0] == 200
    finally:
        daemon.stop()


async def test_an_alert_trigger_is_tried_with_postbackd_test_and_an_alert_sample(
    tmp_path, smtp_server_factory
):
    """Before anything breaks: ``postbackd test`` sends the sample alert through the trigger."""
    server = smtp_server_factory()
    daemon = alerting_daemon(
        tmp_path,
        alerts={},
        triggers=[
            {
                "name": "ops-mail",
                "customer": "postbackd",
                "events": ["postbackd.*"],
                "template": "builtin:alert-email",
                "delivery": "email",
                "options": {"to": "ops@print.example"},
            }
        ],
    )
    daemon.write("smtp.toml", SMTP_TABLE.format(port=server.port))
    done = await asyncio.to_thread(
        daemon.command, "test", "ops-mail", "--sample", "postbackd.delivery_dead"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (mail,) = server.received
    message = mail.message()
    assert message["Subject"] == (
        "[postbackd pb-1] 2 deliveries dead at https://hooks.acme.example:443"
    )
    body = message.get_content()
    assert "These postbacks will not be retried" in body
    assert "6a1d3b5f-9c2e-5d4a-8f8b-2e3c4d5e6f70: trigger acme-order-shipped" in body


async def test_a_file_drop_whose_directory_is_removed_is_down_and_back_when_it_returns(
    tmp_path, webhook_receiver, ops
):
    """Removed, the directory's watch would see nothing more while /readyz said ready: the
    source is down (alerted) until the directory is there again, then watches the new one —
    a file dropped into it is delivered."""
    incoming = tmp_path / "incoming"
    daemon = alerting_daemon(
        tmp_path,
        alerts={"source_down_after": "1s"},
        sources={"filedrop": {"directory": str(incoming)}},
        triggers=[
            {"delivery": "webhook", "options": {"url": webhook_receiver.url("/acme")}},
            ops_webhook(ops),
        ],
    )
    try:
        await daemon.start()
        shutil.rmtree(incoming)
        await until(lambda: of_type(ops, "source_down"), 20, "source_down")
        (down,) = of_type(ops, "source_down")
        assert down["details"]["source"] == "filedrop"
        assert "is gone" in down["details"]["error"]
        status, body = await daemon.get("/readyz")
        assert status == 503 and "is gone" in body["source_errors"]["filedrop"]

        incoming.mkdir()
        await until(lambda: of_type(ops, "source_recovered"), 20, "source_recovered")
        await daemon.wait_ready()
        (incoming / "back.json").write_text(json.dumps(event("evt-back")))
        (request,) = await webhook_receiver.wait_for(1, path="/acme", timeout=15)
        assert request.json()["eventId"] == "evt-back"
        assert [a["alert"] for a in alerts_received(ops)] == ["source_down", "source_recovered"]
    finally:
        daemon.stop()
