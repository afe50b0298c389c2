"""Secrets masked by value (issue 14, item 4), against a real daemon.

A trigger header with a name nobody would guess is secret carries a secret reference: it is
sent for real, yet the API, the UI, ``requests show``, the spool file and the log show ``***``.
A rejected configuration whose error quotes an expanded URL with its password reaches
``last_error``, the UI overview and the log masked.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

from postbackd.testing import PostbackdDaemon, WebhookReceiver, event_payload
from tests.faults.daemon_checks import assert_still_ready

CREDENTIAL = "cred-Zq9-never-shown"
PASSWORD = "pw-Kx7-never-shown"


async def _ui_page(daemon: PostbackdDaemon, path: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(daemon.base_url + path) as answer:
        assert answer.status == 200, await answer.text()
        return await answer.text()


def _requests_show(daemon: PostbackdDaemon, delivery_id: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "postbackd",
            "requests",
            "show",
            delivery_id,
            "-c",
            str(daemon.conf_dir),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **daemon.env},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _spool_bytes(spool: Path) -> bytes:
    return b"".join(p.read_bytes() for p in spool.parent.glob(spool.name + "*"))


async def test_a_secret_under_any_header_name_is_masked_everywhere(
    postbackd_daemon: Callable[..., PostbackdDaemon], webhook_receiver: WebhookReceiver
) -> None:
    daemon = postbackd_daemon(
        triggers=[
            {
                "delivery": "webhook",
                "options": {
                    "url": webhook_receiver.url("/hook"),
                    "headers": {"X-Credentials": "${env:ACME_CREDENTIAL}"},
                },
            }
        ],
        env={"ACME_CREDENTIAL": CREDENTIAL},
    )
    await daemon.start()
    await daemon.submit(event_payload("evt-secret-1"))
    (delivery,) = await daemon.wait_for_deliveries(1, states=("done",))
    # the receiver got the real value: masking is for what is shown, not what is sent
    (received,) = webhook_receiver.requests
    assert received.headers["X-Credentials"] == CREDENTIAL

    detail = await daemon.delivery(delivery["id"])
    (attempt,) = detail["attempts"]
    assert attempt["request"]["headers"]["X-Credentials"] == "***"
    shown = {
        "api": str(detail),
        "ui": await _ui_page(daemon, f"/ui/requests/{delivery['id']}"),
        "requests show": _requests_show(daemon, delivery["id"]),
        "spool": _spool_bytes(daemon.conf_dir.parent / "spool.db").decode("latin-1"),
        "log": daemon.logs(),
    }
    for where, text in shown.items():
        assert CREDENTIAL not in text, f"the secret shows in the {where}"
    assert "X-Credentials" in shown["ui"] and "X-Credentials" in shown["requests show"]
    await assert_still_ready(daemon)


async def test_a_rejected_configuration_does_not_leak_the_password_it_quotes(
    postbackd_daemon: Callable[..., PostbackdDaemon], webhook_receiver: WebhookReceiver
) -> None:
    daemon = postbackd_daemon(
        triggers=[{"delivery": "webhook", "options": {"url": webhook_receiver.url("/hook")}}],
        env={"RECEIVER_PASSWORD": PASSWORD},
    )
    await daemon.start()
    config_file = daemon.conf_dir / "postbackd.toml"
    text = config_file.read_text()
    # a typo in the scheme: the webhook plugin's message quotes the URL, password expanded
    broken = text.replace(
        f'url = "{webhook_receiver.url("/hook")}"',
        'url = "htps://receiver:${env:RECEIVER_PASSWORD}@127.0.0.1:9/hook"',
    )
    assert broken != text
    daemon.write("postbackd.toml", broken)
    status, answer = await daemon.request("POST", "/v1/reload")
    assert status == 422, answer
    assert "postbackd.toml:" in answer["error"] and "htps://receiver:***@" in answer["error"]
    status, config = await daemon.request("GET", "/v1/config")
    assert status == 200 and config["generation"] == 1
    overview = await _ui_page(daemon, "/ui/")
    await asyncio.sleep(0.2)  # the directory watch's own rejection is logged as well
    for where, shown in {
        "reload answer": str(answer),
        "last_error": str(config["last_error"]),
        "UI overview": overview,
        "log": daemon.logs(),
    }.items():
        assert PASSWORD not in shown, f"the password shows in the {where}"
    assert "reload rejected" in daemon.logs()
    daemon.write("postbackd.toml", text)
    await assert_still_ready(daemon, deliveries=1)
