"""Email postbacks end to end: the daemon as a subprocess, aiosmtpd as the PSP's SMTP server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from postbackd.testing import PostbackdDaemon, free_port
from tests.configs import event
from tests.deliveries.email.smtp_fixtures import smtp_server_factory, tls_cert
from tests.paths import example_conf

__all__ = ["smtp_server_factory", "tls_cert"]


def email_files(
    spool: Path, port: int, smtp_port: int, *, password: str, ca_file: Path
) -> dict[str, str]:
    return {
        "daemon.toml": f"""
[daemon]
spool = "{spool}"
grace = "2s"

[sources.http]
listen = "127.0.0.1:{port}"

[deliveries.email]
ca_file = "{ca_file}"
""",
        "smtp.toml": f"""
[smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "starttls"
username = "postbacks@print.example"
password = "{password}"
from_address = "postbacks@print.example"
from_name = "Trykkeriet Ærø"
timeout = "5s"
""",
        "acme.toml": """
[[customer]]
id = "acme"
name = "Acme Prints"

[[trigger]]
name = "acme-shipped-mail"
customer = "acme"
events = ["order.shipped"]
template = "builtin:shipped-email"
delivery = "email"
retry_schedule = ["300ms", "300ms", "300ms", "300ms", "300ms", "300ms"]
[trigger.options]
to = ["Kunde Åse <kunde@acme.example>", "ops@acme.example"]
""",
    }


async def _wait_mail(server, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while len(server.handler.received) < count:
        assert time.monotonic() < deadline, f"{len(server.handler.received)} mails, wanted {count}"
        await asyncio.sleep(0.1)


async def test_email_is_sent_through_the_psp_server_and_survives_a_password_fix(
    tmp_path, smtp_server_factory, tls_cert
):
    server = smtp_server_factory(
        tls="starttls", cert=tls_cert, credentials={"postbacks@print.example": "right"}
    )
    port = free_port()
    daemon = PostbackdDaemon(tmp_path / "conf", port)
    daemon.write_files(
        email_files(
            tmp_path / "spool.db", port, server.port, password="wrong", ca_file=tls_cert.cert
        )
    )
    daemon.launch()
    try:
        await daemon.wait_ready()
        status, _ = await daemon.post(event("mail-1", order="o-mail"))
        assert status == 202
        await asyncio.sleep(1.0)
        assert server.handler.received == []  # wrong password: retried, not sent, not dead
        assert "SMTP authentication failed for postbacks@print.example" in daemon.logs()
        daemon.write_files(
            email_files(
                tmp_path / "spool.db", port, server.port, password="right", ca_file=tls_cert.cert
            )
        )  # the admin fixes it: hot reload
        await _wait_mail(server, 1)
    finally:
        daemon.stop()
    mail = server.handler.received[0]
    assert set(mail.rcpt_tos) == {"kunde@acme.example", "ops@acme.example"}
    message = mail.message()
    assert message["From"].addresses[0].display_name == "Trykkeriet Ærø"
    assert "Kunde Åse" in str(message["To"])
    assert message.get_content_type() == "multipart/alternative"
    assert "\n" not in str(message["Subject"])
    assert message["Message-ID"].startswith("<")


async def test_temporary_refusal_is_retried_and_permanent_is_dead(
    tmp_path, smtp_server_factory, tls_cert
):
    server = smtp_server_factory(
        tls="starttls", cert=tls_cert, credentials={"postbacks@print.example": "right"}
    )
    server.handler.data_replies = ["451 4.3.0 try again later"]
    server.handler.refuse = {"gone@acme.example": "550 5.1.1 mailbox unavailable"}
    port = free_port()
    daemon = PostbackdDaemon(tmp_path / "conf", port)
    files = email_files(
        tmp_path / "spool.db", port, server.port, password="right", ca_file=tls_cert.cert
    )
    files["gone.toml"] = """
[[trigger]]
name = "acme-gone-mail"
customer = "acme"
events = ["order.delivered"]
template = "builtin:shipped-email"
delivery = "email"
[trigger.options]
to = "gone@acme.example"
"""
    daemon.write_files(files)
    daemon.launch()
    try:
        await daemon.wait_ready()
        await daemon.post(
            [event("mail-451", order="o-1"), event("mail-550", "order.delivered", order="o-2")]
        )
        await _wait_mail(server, 1)
        deadline = time.monotonic() + 10
        while True:
            _, body = await daemon.get("/v1/deliveries?limit=10")
            states = {d["trigger"]: d for d in body["deliveries"]}
            if (
                states.get("acme-gone-mail", {}).get("state") == "dead"
                or time.monotonic() > deadline
            ):
                break
            await asyncio.sleep(0.1)
    finally:
        daemon.stop()
    assert states["acme-shipped-mail"]["state"] == "done"
    assert states["acme-shipped-mail"]["attempts"] == 2
    assert states["acme-gone-mail"]["state"] == "dead"
    assert states["acme-gone-mail"]["attempts"] == 1
    assert "550" in states["acme-gone-mail"]["last_error"]


def test_example_email_trigger_works_against_a_local_smtp_server(tmp_path, smtp_server_factory):
    server = smtp_server_factory()
    conf = example_conf(tmp_path)
    smtp = conf / "smtp.toml"
    smtp.write_text(smtp.read_text().replace("1025", str(server.port)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "postbackd",
            "test",
            "acme-order-problems",
            "--sample",
            "order.failed",
            "-c",
            str(conf),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result   sent" in result.stdout
    (mail,) = server.handler.received
    assert mail.rcpt_tos == ("ops@acme.example",)
