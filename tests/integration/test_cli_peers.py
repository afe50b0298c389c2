"""`send`, `test` and `check --connect` as subprocesses against real peers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from postbackd.testing import free_port
from tests.configs import event, webhook_config
from tests.deliveries.email.smtp_fixtures import smtp_server_factory

__all__ = ["smtp_server_factory"]


async def postbackd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI without blocking the event loop the receiver runs on."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "postbackd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


async def test_send_submits_files_to_the_running_daemon(receiver, daemon_factory, tmp_path):
    daemon = daemon_factory(receiver.url("/hook"), token="t0k3n")
    daemon.launch()
    await daemon.wait_ready()
    good = tmp_path / "good.json"
    good.write_text(json.dumps([event("send-1"), event("send-2", order="o-2")]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "x"}))
    result = await postbackd(
        "send", str(good), str(bad), "--token", "t0k3n", "-c", str(daemon.conf_dir)
    )
    assert result.returncode == 1  # one file was refused
    assert '"accepted":["send-1","send-2"]' in result.stdout
    assert "HTTP 400" in result.stderr and "bad.json" in result.stderr
    await receiver.wait_events({"send-1", "send-2"})


def conf_with_email(tmp_path: Path, receiver_url: str, smtp_port: int) -> Path:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    files = webhook_config(receiver_url, port=free_port(), spool=tmp_path / "never.db")
    files["smtp.toml"] = f"""
[smtp]
host = "127.0.0.1"
port = {smtp_port}
from_address = "postbacks@print.example"

[[trigger]]
name = "acme-mail"
customer = "acme"
events = ["order.failed"]
template = "builtin:shipped-email"
delivery = "email"
status = "inactive"
[trigger.options]
to = "ops@acme.example"
"""
    for name, text in files.items():
        (conf / name).write_text(text)
    return conf


async def test_test_sends_one_postback_without_touching_the_spool(
    receiver, tmp_path, smtp_server_factory
):
    smtp = smtp_server_factory()
    conf = conf_with_email(tmp_path, receiver.url("/hook"), smtp.port)
    webhook = await postbackd("test", "acme-all", "--sample", "order.shipped", "-c", str(conf))
    assert webhook.returncode == 0, webhook.stderr
    assert "== request" in webhook.stdout and "== response" in webhook.stdout
    assert "  webhook-signature: ***" in webhook.stdout  # secrets masked in what is shown
    assert "outcome: delivered" in webhook.stdout
    assert len(receiver.requests) == 1
    mail = await postbackd("test", "acme-mail", "--sample", "order.failed", "-c", str(conf))
    assert mail.returncode == 0, mail.stdout + mail.stderr  # an inactive trigger can be tested
    assert "result   sent" in mail.stdout
    assert len(smtp.handler.received) == 1
    assert not (tmp_path / "never.db").exists()


async def test_check_connect_names_the_step_that_fails(receiver, tmp_path, smtp_server_factory):
    smtp = smtp_server_factory()
    conf = conf_with_email(tmp_path, receiver.url("/hook"), smtp.port)
    ok = await postbackd("check", "--connect", "-c", str(conf))
    assert ok.returncode == 0, ok.stdout
    assert "ok   tcp" in ok.stdout
    smtp.stop()
    receiver.stop()
    failed = await postbackd("check", "--connect", "-c", str(conf))
    assert failed.returncode == 1
    assert "FAIL tcp" in failed.stdout
    assert f"127.0.0.1:{smtp.port}" in failed.stdout
