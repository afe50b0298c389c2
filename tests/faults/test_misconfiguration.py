"""Misconfiguration that would open the door (issue 14, item 3), against a real daemon.

A token that resolves to the empty string, and an admin listener off loopback without a
token, are refused by ``check``, at start and on reload — naming file and line — and a
refused reload leaves the running configuration (and its token) in force.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from postbackd.testing import PostbackdDaemon
from tests.faults.daemon_checks import assert_still_ready, check, no_traceback

WHERE = re.compile(r"postbackd\.toml:(\d+): ")


def _line_of(text: str, setting: str) -> int:
    """The 1-based line of `setting = ` in a TOML text."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(f"{setting} = "):
            return number
    raise AssertionError(f"{setting} not in {text}")


async def test_empty_admin_token_refused_by_check_and_at_start(
    postbackd_daemon: Callable[..., PostbackdDaemon],
) -> None:
    daemon = postbackd_daemon(daemon={"admin_token": "${env:ADMIN_TOKEN}"}, env={"ADMIN_TOKEN": ""})
    line = _line_of((daemon.conf_dir / "postbackd.toml").read_text(), "admin_token")
    code, output = check(daemon)
    assert code == 1, output
    assert (
        f"postbackd.toml:{line}: [daemon] admin_token: '${{env:ADMIN_TOKEN}}' resolves to an "
        "empty string" in output
    )
    assert no_traceback(output)
    daemon.launch()
    assert await daemon.wait_exit() == 1
    logs = daemon.logs()
    assert f"postbackd.toml:{line}: [daemon] admin_token" in logs and no_traceback(logs)


async def test_admin_listen_off_loopback_without_token_refused_at_start(
    postbackd_daemon: Callable[..., PostbackdDaemon],
) -> None:
    daemon = postbackd_daemon(sources={"http": None})
    text = (daemon.conf_dir / "postbackd.toml").read_text()
    # the daemon never binds 0.0.0.0: it is refused before any listener starts
    daemon.write("postbackd.toml", text.replace("127.0.0.1:", "0.0.0.0:"))
    line = _line_of(text, "admin_listen")
    code, output = check(daemon)
    assert code == 1, output
    assert (
        f"postbackd.toml:{line}: [daemon] admin_listen: listens on 0.0.0.0, which is not "
        "loopback, without a token" in output
    )
    daemon.launch()
    assert await daemon.wait_exit() == 1
    assert f"postbackd.toml:{line}: [daemon] admin_listen" in daemon.logs()


async def test_reload_to_an_empty_token_is_rejected_and_the_old_token_stays(
    postbackd_daemon: Callable[..., PostbackdDaemon],
) -> None:
    daemon = postbackd_daemon(env={"INTAKE_TOKEN": "old-intake-token", "EMPTY": ""})
    text = (daemon.conf_dir / "postbackd.toml").read_text()
    text = text.replace("[sources.http]\n", '[sources.http]\ntoken = "${env:INTAKE_TOKEN}"\n')
    assert "${env:INTAKE_TOKEN}" in text
    daemon.write("postbackd.toml", text)
    daemon.token = "old-intake-token"
    await daemon.start()
    daemon.write("postbackd.toml", text.replace("${env:INTAKE_TOKEN}", "${env:EMPTY}"))
    line = _line_of(text, "token")
    status, answer = await daemon.request("POST", "/v1/reload")
    assert status == 422, answer
    assert (
        f"postbackd.toml:{line}: [sources.http] token: '${{env:EMPTY}}' resolves to an "
        "empty string" in answer["error"]
    )
    status, config = await daemon.request("GET", "/v1/config")
    assert status == 200 and config["generation"] == 1 and config["last_error"]
    # the old token is still required: the door did not open
    daemon.token = None
    status, refused = await daemon.request("GET", "/v1/config")
    assert status == 401, refused
    status, refused_intake = await daemon.request("POST", "/v1/events", _event())
    assert status == 401, refused_intake
    daemon.token = "old-intake-token"
    await assert_still_ready(daemon)
    assert "reload failed after the swap" not in daemon.logs()


def _event() -> dict[str, Any]:
    from postbackd.testing import event_payload

    return event_payload("evt-no-token")
