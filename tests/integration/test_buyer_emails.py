"""Buyer emails: recipient options rendered from the event (``to = "{{ shipTo.email }}"``).

The real daemon (a subprocess) sends through a real aiosmtpd server on 127.0.0.1. A rendered
address that is good reaches RCPT TO and the To header; one that is empty, carries a line break
or smuggles another header makes the delivery `failed` with the reason, and no mail is sent.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from postbackd.testing import PostbackdDaemon, free_port
from tests.configs import event
from tests.deliveries.email.smtp_fixtures import smtp_server, smtp_server_factory

__all__ = ["smtp_server", "smtp_server_factory"]


def buyer_email_files(spool: Path, port: int, smtp_port: int) -> dict[str, str]:
    return {
        "daemon.toml": f"""
[daemon]
spool = "{spool}"
grace = "2s"

[sources.http]
listen = "127.0.0.1:{port}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from_address = "orders@psp.example"
from_name = "Print Co."
timeout = "5s"
""",
        "acme.toml": """
[[customer]]
id = "acme"
name = "Acme Prints"

[[template]]
name = "buyer-shipped"
format = "text"
subject = "Your order {{ orderId }} has shipped"
body = "Hello {{ shipTo.name | default('') }}, order {{ orderId }} is on its way."

[[trigger]]
name = "buyer-shipped"
customer = "acme"
events = ["order.shipped"]
template = "buyer-shipped"
delivery = "email"
retry_schedule = ["200ms"]
[trigger.options]
to = "{{ shipTo.name }} <{{ shipTo.email }}>"
cc = ["{{ shipTo.cc | default('sales@acme.example') }}"]
bcc = "archive@psp.example"
reply_to = "support+{{ orderId }}@psp.example"
""",
    }


async def deliveries_settled(daemon: PostbackdDaemon, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        status, body = await daemon.get("/v1/deliveries?limit=100")
        assert status == 200, body
        final = [d for d in body["deliveries"] if d["state"] in ("done", "failed", "dead")]
        if len(final) >= count:
            return list(body["deliveries"])
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def test_recipients_rendered_from_the_event_and_bad_ones_failed(tmp_path, smtp_server):
    port = free_port()
    daemon = PostbackdDaemon(tmp_path / "conf", port)
    daemon.write_files(buyer_email_files(tmp_path / "spool.db", port, smtp_server.port))
    checked = daemon_check(daemon)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    daemon.launch()
    await daemon.wait_ready()

    buyer = {"name": "Åse Buyer", "email": "ase@buyer.example"}
    status, _ = await daemon.post(
        [
            event("evt-good", order="o-good", shipTo=buyer),
            event(
                "evt-two",
                order="o-two",
                shipTo={"name": "Pair", "email": "one@buyer.example>, <two@buyer.example"},
            ),
            event(
                "evt-crlf",
                order="o-crlf",
                shipTo={"name": "X", "email": "x@buyer.example\r\nBcc: victim@evil.example"},
            ),
            event(
                "evt-header",
                order="o-header",
                shipTo={"name": "Y", "email": "y@buyer.example>, Bcc: victim@evil.example <z"},
            ),
            event("evt-empty", order="o-empty", shipTo={"name": "Z", "email": ""}),
            event("evt-missing", order="o-missing"),
        ]
    )
    assert status == 202
    deliveries = await deliveries_settled(daemon, 6)
    by_order = {d["order_id"]: d for d in deliveries}
    assert by_order["o-good"]["state"] == "done", by_order["o-good"]
    assert by_order["o-two"]["state"] == "done", by_order["o-two"]
    for order in ("o-crlf", "o-header", "o-empty", "o-missing"):
        assert by_order[order]["state"] == "failed", by_order[order]
        assert "options.to" in by_order[order]["last_error"], by_order[order]
    assert "line break" in by_order["o-crlf"]["last_error"]
    assert "'Z <>' is not an email address" in by_order["o-empty"]["last_error"]
    assert "{{ shipTo.name }} <{{ shipTo.email }}>" in by_order["o-missing"]["last_error"]

    mails = smtp_server.handler.received
    assert len(mails) == 2
    good = next(m for m in mails if "ase@buyer.example" in m.rcpt_tos)
    assert set(good.rcpt_tos) == {
        "ase@buyer.example",
        "sales@acme.example",
        "archive@psp.example",
    }
    message = good.message()
    assert str(message["To"]) == "Åse Buyer <ase@buyer.example>"
    assert str(message["Reply-To"]) == "support+o-good@psp.example"
    assert "Bcc" not in message
    pair = next(m for m in mails if m is not good)
    assert {"one@buyer.example", "two@buyer.example"} <= set(pair.rcpt_tos)
    everything = b"".join(m.data for m in mails) + str([m.rcpt_tos for m in mails]).encode()
    assert b"evil.example" not in everything

    status, detail = await daemon.get(f"/v1/deliveries/{by_order['o-crlf']['id']}")
    assert "{{ shipTo.name }} <{{ shipTo.email }}>" in detail["attempts"][-1]["error"]


def daemon_check(daemon: PostbackdDaemon):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "postbackd", "check", "-c", str(daemon.conf_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
