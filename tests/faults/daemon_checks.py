"""What every daemon-level hostile test checks after the hostile part: the daemon is still
there, ready, and still accepts and delivers an event."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Mapping
from typing import Any

from postbackd.testing import PostbackdDaemon, event_payload


async def assert_still_ready(daemon: PostbackdDaemon, *, deliveries: int | None = None) -> None:
    """The process runs, ``/readyz`` says ready and a new event is accepted (202).

    With `deliveries`, also waits until that many deliveries are done (nothing was lost).
    """
    assert daemon.exit_code() is None, f"the daemon exited:\n{daemon.logs()}"
    status, answer = await daemon.request("GET", "/readyz")
    assert status == 200 and answer["ready"], answer
    await daemon.submit(event_payload(f"evt-alive-{uuid.uuid4().hex[:8]}"))
    if deliveries is not None:
        await daemon.wait_for_deliveries(deliveries, states=("done",))


def check(daemon: PostbackdDaemon, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """``postbackd check`` on the daemon's configuration: (exit code, stdout + stderr)."""
    saved = dict(daemon.env)
    daemon.env.update(env or {})
    try:
        done: subprocess.CompletedProcess[str] = daemon.command("check")
    finally:
        daemon.env.clear()
        daemon.env.update(saved)
    return done.returncode, done.stdout + done.stderr


def no_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" not in text


def log_lines(daemon: PostbackdDaemon, event: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines whose ``event`` is `event`."""
    found = []
    for line in daemon.logs().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == event:
            found.append(entry)
    return found
