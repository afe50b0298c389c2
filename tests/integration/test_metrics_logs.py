"""What an operator reads: /metrics as events flow, the daemon's log lines, and the proof that
no secret value reaches the logs, the request log or the admin API.

The daemon runs as a subprocess (started as ``postbackd --log-level LEVEL run -c DIR``); the
webhook receiver and the SMTP server are real servers on the loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from postbackd.logs import redact_secrets
from postbackd.testing import PostbackdDaemon, free_port
from tests.configs import event, webhook_config
from tests.deliveries.email.smtp_fixtures import smtp_server_factory

__all__ = ["smtp_server_factory"]

TOKEN = "intake-tok-5ECRET-1"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics answer, keyed by name and labels (parsed by prometheus)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str):
    return parsed.get((name, frozenset(labels.items())), 0.0)


async def scrape(daemon: PostbackdDaemon) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = await daemon.get("/metrics")
    assert status == 200, text
    return samples(text)


async def final_deliveries(daemon: PostbackdDaemon, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        status, body = await daemon.get("/v1/deliveries?limit=100")
        assert status == 200, body
        done = [d for d in body["deliveries"] if d["state"] in ("done", "dead")]
        if len(done) >= count:
            return done
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


def log_lines(daemon: PostbackdDaemon) -> list[dict[str, Any]]:
    text = daemon.logs()
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    return parsed


async def test_metrics_move_and_log_lines_carry_ids(receiver, tmp_path):
    receiver.respond("/hook", 500, 200)
    port = free_port()
    files = webhook_config(
        receiver.url("/hook"), port=port, spool=tmp_path / "spool.db", token=TOKEN
    )
    files["daemon.toml"] += 'max_body = "2KiB"\n'  # the file ends inside [sources.http]
    daemon = PostbackdDaemon(tmp_path / "conf", port, token=TOKEN, log_level="info")
    daemon.write_files(files)
    daemon.launch()
    try:
        await daemon.wait_ready()
        before = await scrape(daemon)
        assert value(before, "postbackd_config_generation") == 1
        assert value(before, "postbackd_events_received_total", source="http") == 0

        events = [event(f"m-{i}", order=f"o-{i}") for i in range(3)]
        stranger = {**event("m-unknown"), "customer": "nobody"}
        assert (await daemon.post([*events, stranger]))[0] == 202
        assert (await daemon.post(None, raw=b"{not json"))[0] == 400
        assert (await daemon.post(event("m-x"), token="wrong"))[0] == 401
        assert (await daemon.post(None, raw=b"[" + b" " * 4096 + b"]"))[0] == 413
        await receiver.wait_for(4, timeout=10)  # one failure, then three successes
        delivered = await final_deliveries(daemon, 3)

        after = await scrape(daemon)
        assert value(after, "postbackd_events_received_total", source="http") == 4
        assert value(after, "postbackd_events_unmatched_total") == 1
        for reason in ("invalid", "unauthorized", "too_large"):
            rejected = value(after, "postbackd_events_rejected_total", source="http", reason=reason)
            assert rejected == 1, reason
        labels = {"plugin": "webhook", "customer": "acme"}
        assert value(after, "postbackd_deliveries_total", outcome="ok", **labels) == 3
        assert value(after, "postbackd_deliveries_total", outcome="retry", **labels) == 1
        duration = value(after, "postbackd_delivery_duration_seconds_count", plugin="webhook")
        assert duration == 4
        assert value(after, "postbackd_delivery_duration_seconds_sum", plugin="webhook") > 0
        assert value(after, "postbackd_spool_deliveries", state="done") == 3
        assert value(after, "postbackd_spool_deliveries", state="pending") == 0
        assert value(after, "postbackd_oldest_pending_seconds") == 0
        assert value(after, "postbackd_breakers_open") == 0

        daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while value(await scrape(daemon), "postbackd_config_generation") != 2:
            assert time.monotonic() < deadline, "generation did not move to 2"
            await asyncio.sleep(0.05)
        reloaded = await scrape(daemon)
        assert value(reloaded, "postbackd_config_reloads_total", result="applied") == 1
        assert value(reloaded, "postbackd_config_reloads_total", result="rejected") == 0
    finally:
        daemon.stop()

    lines = log_lines(daemon)  # every line JSON: stderr is not a TTY here
    assert all({"event", "level", "timestamp", "logger"} <= line.keys() for line in lines)
    assert not [line for line in lines if line["level"] == "debug"]  # --log-level info
    about_deliveries = [line for line in lines if "delivery_id" in line]
    assert about_deliveries
    for line in about_deliveries:
        assert {"event_id", "customer", "trigger"} <= line.keys(), line
    attempts = [line for line in lines if line["event"] == "delivery attempt"]
    assert {line["delivery_id"] for line in attempts} == {d["id"] for d in delivered}
    assert {line["event_id"] for line in attempts} == {"m-0", "m-1", "m-2"}
    unmatched = [line for line in lines if line["event"] == "event matched no trigger"]
    assert [(line["event_id"], line["customer"]) for line in unmatched] == [("m-unknown", "nobody")]


SECRETS = {
    "PB_TEST_TOKEN": TOKEN,
    "PB_SMTP_PASSWORD": "smtp-pa55-5ECRET-3",
    "PB_API_KEY": "api-key-5ECRET-4",
}
LITERAL_SECRETS = (
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # the signing key without its prefix
    "Bearer hdr-5ECRET-2",
    "hdr-5ECRET-2",
    "url-pa55-5ECRET-5",
    "query-5ECRET-6",
)


def secret_config(receiver_url: str, smtp_port: int, port: int, spool: str) -> dict[str, str]:
    basic = receiver_url.replace("http://", "http://hooks:url-pa55-5ECRET-5@") + "-basic"
    return {
        "daemon.toml": f"""
[daemon]
spool = "{spool}"
allow_private_destinations = true
grace = "5s"

[sources.http]
listen = "127.0.0.1:{port}"
token = "${{env:PB_TEST_TOKEN}}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
username = "postbacks"
password = "${{env:PB_SMTP_PASSWORD}}"
from_address = "postbacks@example.com"
tls = "none"
timeout = "5s"
""",
        "acme.toml": f"""
[[customer]]
id = "acme"
name = "Acme Prints"

[[trigger]]
name = "acme-hook"
customer = "acme"
events = ["order.*"]
template = "builtin:order-status-json"
delivery = "webhook"
retry_schedule = ["200ms", "200ms"]
[trigger.options]
url = "{receiver_url}?token=query-5ECRET-6"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
headers = {{ "Authorization" = "Bearer hdr-5ECRET-2", "X-Api-Key" = "${{env:PB_API_KEY}}" }}

[[trigger]]
name = "acme-basic"
customer = "acme"
events = ["order.*"]
template = "builtin:order-status-xml"
delivery = "webhook"
[trigger.options]
url = "{basic}"

[[trigger]]
name = "acme-mail"
customer = "acme"
events = ["order.shipped"]
template = "builtin:shipped-email"
delivery = "email"
retry_schedule = ["200ms"]
[trigger.options]
to = "ops@example.com"
""",
    }


async def test_secrets_appear_nowhere(receiver, smtp_server_factory, tmp_path):
    smtp = smtp_server_factory(credentials={"postbacks": SECRETS["PB_SMTP_PASSWORD"]})
    receiver.respond("/hook", 401, 200)  # a failure too: its log line and request log
    port = free_port()
    daemon = PostbackdDaemon(
        tmp_path / "conf", port, token=TOKEN, env=dict(SECRETS), log_level="debug"
    )  # the chattiest the daemon gets
    daemon.write_files(
        secret_config(receiver.url("/hook"), smtp.port, port, str(tmp_path / "spool.db"))
    )
    daemon.launch()
    try:
        await daemon.wait_ready()
        assert (await daemon.post(event("s-1")))[0] == 202
        assert (await daemon.post(event("s-2"), token="wrong-token"))[0] == 401
        (request, *_) = await receiver.wait_for(2, timeout=10, path="/hook")
        assert request.headers["Authorization"] == "Bearer hdr-5ECRET-2"  # it was sent
        (basic,) = await receiver.wait_for(1, timeout=10, path="/hook-basic")
        assert basic.headers["Authorization"].startswith("Basic ")
        deadline = time.monotonic() + 10
        while not smtp.received:
            assert time.monotonic() < deadline, "no mail arrived"
            await asyncio.sleep(0.05)
        assert {user for _, user in smtp.handler.logins} == {"postbacks"}  # it logged in
        delivered = await final_deliveries(daemon, 3)
        answers = [await daemon.get(f"/v1/deliveries/{d['id']}") for d in delivered]
        answers += [await daemon.get("/v1/deliveries"), await daemon.get("/v1/config")]
        webhook = next(a for _, a in answers[:3] if a["delivery"]["trigger"] == "acme-hook")
        assert len(webhook["attempts"]) == 2 and webhook["attempts"][0]["status"] == 401
        assert webhook["attempts"][0]["request"]["headers"]["Authorization"] == "***"
    finally:
        daemon.stop()

    api_text = json.dumps([body for _, body in answers])
    logs = daemon.logs()
    assert any(line["level"] == "debug" for line in log_lines(daemon))
    for secret in (*SECRETS.values(), *LITERAL_SECRETS):
        assert secret not in logs, f"{secret!r} in the daemon's log"
        assert secret not in api_text, f"{secret!r} in the admin API's answers"


async def test_on_a_terminal_lines_are_readable_key_value(receiver, daemon_factory):
    daemon = daemon_factory(receiver.url("/hook"))
    primary, secondary = pty.openpty()
    daemon.process = subprocess.Popen(
        [sys.executable, "-m", "postbackd", "run", "-c", str(daemon.conf_dir)],
        stdout=subprocess.DEVNULL,
        stderr=secondary,
    )
    os.close(secondary)
    try:
        await daemon.wait_ready()
        output = b""
        deadline = time.monotonic() + 10
        while b"http source listening" not in output:
            assert time.monotonic() < deadline, output
            ready, _, _ = await asyncio.to_thread(select.select, [primary], [], [], 0.5)
            if ready:
                output += os.read(primary, 65536)
    finally:
        daemon.stop()
        os.close(primary)
    lines = [line for line in output.decode().splitlines() if line.strip()]
    ready_line = next(line for line in lines if "postbackd ready" in line)
    assert not ready_line.lstrip().startswith("{")
    assert "[info" in ready_line and "generation=1" in ready_line and "triggers=1" in ready_line


def test_values_under_secret_names_are_masked():
    logged = redact_secrets(
        None,
        "info",
        {"event": "x", "password": "p", "smtp_password": "s", "Authorization": "a", "trigger": "t"},
    )
    assert logged == {
        "event": "x",
        "password": "***",
        "smtp_password": "***",
        "Authorization": "***",
        "trigger": "t",
    }
