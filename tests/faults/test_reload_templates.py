"""A template with a Jinja syntax error is refused by every reload (issue 14, item 5).

The directory watch, ``POST /v1/reload`` and ``postbackd reload`` all compile every template
before the swap, as ``check`` does: the broken one is rejected with its file and line, the
running configuration stays, and deliveries keep using the template that works.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from postbackd.testing import PostbackdDaemon, WebhookReceiver, event_payload
from tests.faults.daemon_checks import assert_still_ready, check, no_traceback

GOOD = """
[[template]]
name = "acme-json"
format = "json"
body = '{ "order": "{{ orderId }}", "version": "good" }'
"""
BROKEN = """
[[template]]
name = "acme-json"
format = "json"
body = '{ "order": "{{ orderId }", "version": "broken" }'

[[template]]
name = "unused-but-broken"
format = "text"
body = "{% if %}"
"""


async def _reload_via_watch(daemon: PostbackdDaemon) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, config = await daemon.request("GET", "/v1/config")
        if status == 200 and config["last_error"]:
            return {"ok": False, "error": config["last_error"]}
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"the directory watch never reported the broken template:\n{daemon.logs()}"
    )


async def _reload_via_api(daemon: PostbackdDaemon) -> dict[str, Any]:
    status, answer = await daemon.request("POST", "/v1/reload")
    assert status == 422, answer
    return dict(answer)


async def _reload_via_cli(daemon: PostbackdDaemon) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "postbackd",
        "reload",
        "-c",
        str(daemon.conf_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **daemon.env},
    )
    out, err = await process.communicate()
    assert process.returncode == 1, (out, err)
    return {"ok": False, "error": (out + err).decode()}


@pytest.mark.parametrize("reload", [_reload_via_watch, _reload_via_api, _reload_via_cli])
async def test_a_template_that_does_not_compile_is_rejected_and_the_old_one_stays(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    webhook_receiver: WebhookReceiver,
    reload: Callable[[PostbackdDaemon], Any],
) -> None:
    daemon = postbackd_daemon(
        triggers=[
            {
                "delivery": "webhook",
                "template": "acme-json",
                "options": {"url": webhook_receiver.url("/hook")},
            }
        ]
    )
    daemon.write("templates.toml", GOOD)
    await daemon.start()
    daemon.write("templates.toml", BROKEN)
    code, output = check(daemon)
    assert code == 1 and no_traceback(output), output
    answer = await reload(daemon)
    assert not answer["ok"]
    assert "templates.toml:2:" in answer["error"], answer  # the [[template]] that is broken
    assert "templates.toml:7:" in answer["error"], answer  # unused, still refused
    status, config = await daemon.request("GET", "/v1/config")
    assert status == 200 and config["generation"] == 1, config
    assert "reload failed after the swap" not in daemon.logs()

    await daemon.submit(event_payload("evt-after-broken-reload", order="o-77"))
    await assert_still_ready(daemon, deliveries=2)
    bodies = [request.json() for request in webhook_receiver.requests]
    assert {"order": "o-77", "version": "good"} in bodies
