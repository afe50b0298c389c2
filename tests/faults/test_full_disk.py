"""A full disk under a real daemon: the spool on a small tmpfs, filled by another writer.

Intake answers 503 *before* the file system fills (a burst of large batches cannot overrun
``min_free`` between two measurements); with the disk then filled to the last byte, the daemon
keeps running (deliveries and outcomes wait and retry), and once space returns everything it
acknowledged is delivered, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from postbackd.testing import PostbackdDaemon, WebhookReceiver, event_payload
from tests.faults.hostile import assert_delivered, assert_ready, post_request, raw_http

DISK_BYTES = 24 * 2**20
BLOB = "x" * 200_000  # stored with the event, not rendered by the template


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs; skipped where mounting is impossible, except under CI."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        message = f"cannot mount a tmpfs: {result.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (under CI this test must run: give the runner CAP_SYS_ADMIN)")
        pytest.skip(message)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path, leave: int) -> None:
    """Write `path` until only `leave` bytes are free on its file system (0: until ENOSPC)."""
    chunk = b"\0" * 2**16
    with contextlib.suppress(OSError), open(path, "ab", buffering=0) as out:
        while shutil.disk_usage(path.parent).free > leave + len(chunk):
            out.write(chunk)
        if leave == 0:
            while True:
                out.write(b"\0" * 4096)


def batch(prefix: str, start: int, count: int) -> bytes:
    return json.dumps(
        [
            event_payload(f"{prefix}-{n}", order=f"o-{n}", blob=BLOB)
            for n in range(start, start + count)
        ]
    ).encode()


async def post(daemon: PostbackdDaemon, body: bytes) -> tuple[int, dict[str, object]]:
    answer = await raw_http(
        daemon.port, post_request("/v1/events", body, [("Content-Type", b"application/json")])
    )
    return answer.status, answer.json()


async def test_a_full_disk_is_survived_and_nothing_acknowledged_is_lost(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    webhook_receiver: WebhookReceiver,
    small_disk: Path,
) -> None:
    webhook_receiver.respond("/hook", 500)  # keep deliveries retrying while the disk is full
    daemon = await postbackd_daemon(
        triggers=[
            {
                "delivery": "webhook",
                "options": {"url": webhook_receiver.url("/hook")},
                "retry_schedule": ["300ms"] * 200,
            }
        ],
        daemon={
            "spool": str(small_disk / "spool.db"),
            "min_free": "4MiB",
            "breaker_failures": 1_000_000,  # keep attempting (and recording) while it is full
        },
    ).start()
    fill(small_disk / "filler-1", leave=10 * 2**20)

    # A burst of large batches, faster than any periodic measurement: refused before the
    # disk is full, and the file system keeps its reserve.
    accepted: list[str] = []
    refused = None
    for request in range(40):
        status, answer = await post(daemon, batch("evt-burst", request * 4, 4))
        if status == 503:
            refused = answer
            break
        assert status == 202, answer
        accepted += answer["accepted"]  # type: ignore[arg-type]
    assert refused is not None, "intake never refused"
    assert "disk" in str(refused["error"]) or "min_free" in str(refused["error"]), refused
    assert accepted, "nothing was accepted before the refusal"
    assert shutil.disk_usage(small_disk).free > 2 * 2**20, shutil.disk_usage(small_disk)

    # Another process takes the last byte: the daemon must keep running, refusing intake.
    fill(small_disk / "filler-2", leave=0)
    assert shutil.disk_usage(small_disk).free < 64 * 1024
    for _ in range(20):
        await asyncio.sleep(0.25)
        assert daemon.exit_code() is None, daemon.logs()[-4000:]
        status, _ = await daemon.request("GET", "/healthz")
        assert status == 200
    status, answer = await post(daemon, batch("evt-full", 0, 1))
    assert status == 503, answer
    assert "retrying with backoff until it can" in daemon.logs()  # the full disk was met

    # Space returns and the receiver recovers: everything acknowledged arrives, no restart.
    for filler in ("filler-1", "filler-2"):
        (small_disk / filler).unlink()
    webhook_receiver.respond("/hook", 200)
    await assert_delivered(webhook_receiver, accepted, daemon=daemon, timeout=60)
    status, answer = await post(daemon, batch("evt-after", 0, 1))
    assert status == 202, answer
    await assert_delivered(webhook_receiver, ["evt-after-0"], daemon=daemon, timeout=30)
    await assert_ready(daemon)
