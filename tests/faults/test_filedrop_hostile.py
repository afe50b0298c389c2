"""File drop against hostile directory entries, with a real daemon watching a real directory.

A FIFO, a symlink to /dev/zero, a symlink to a file outside the directory and a device node
must be moved to ``rejected/`` with a ``NAME.error`` without ever being read; a file larger than
``max_file_size`` is rejected by what is read, not by what stat says; a good file dropped after all
of them is still processed, the daemon stays ready, and SIGTERM ends it promptly.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postbackd.testing import PostbackdDaemon, WebhookReceiver, event_payload
from tests.faults.hostile import assert_delivered, assert_ready, jsonl, place


def filedrop_daemon(
    make: Callable[..., PostbackdDaemon],
    receiver: WebhookReceiver,
    incoming: Path,
    **filedrop: Any,
) -> PostbackdDaemon:
    return make(
        triggers=[{"delivery": "webhook", "options": {"url": receiver.url("/hook")}}],
        sources={"filedrop": {"directory": str(incoming), **filedrop}},
    )


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)


def rejected_error(incoming: Path, name: str) -> str:
    return (incoming / "rejected" / f"{name}.error").read_text()


async def test_links_fifos_and_devices_are_rejected_unread(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    webhook_receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    incoming = tmp_path / "incoming"
    outside = tmp_path / "elsewhere" / "orders.json"
    outside.parent.mkdir()
    outside.write_text(jsonl(event_payload("evt-outside")).decode())
    daemon = await filedrop_daemon(postbackd_daemon, webhook_receiver, incoming).start()

    os.mkfifo(incoming / "pipe.jsonl")
    (incoming / "zero.jsonl").symlink_to("/dev/zero")
    (incoming / "outside.json").symlink_to(outside)
    hostile = ["pipe.jsonl", "zero.jsonl", "outside.json"]
    try:
        os.mknod(incoming / "device.json", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        hostile.append("device.json")
    except PermissionError:
        pass  # no CAP_MKNOD here: the other entries still cover the class
    place(incoming / "good.jsonl", jsonl(event_payload("evt-good-1"), event_payload("evt-good-2")))

    for name in hostile:
        await wait_for(lambda n=name: (incoming / "rejected" / f"{n}.error").exists(), name)
        error = rejected_error(incoming, name)
        assert "not read" in error and "regular file" in error, error
        assert os.path.lexists(incoming / "rejected" / name)
        assert not os.path.lexists(incoming / name)
    assert "symbolic link" in rejected_error(incoming, "zero.jsonl")
    assert "FIFO" in rejected_error(incoming, "pipe.jsonl")
    # The symlink moved, not what it points at; nothing of the outside file was accepted.
    assert (incoming / "rejected" / "outside.json").is_symlink()
    assert outside.read_text() == jsonl(event_payload("evt-outside")).decode()

    await assert_delivered(webhook_receiver, ["evt-good-1", "evt-good-2"])
    await assert_ready(daemon)
    assert not [r for r in webhook_receiver.requests if r.json()["eventId"] == "evt-outside"]
    status, answer = await daemon.request("GET", "/v1/deliveries?limit=50")
    assert status == 200, answer
    assert {d["event_id"] for d in answer["deliveries"]} == {"evt-good-1", "evt-good-2"}

    # A FIFO left in the directory by a writer that never comes does not hold up shutdown.
    os.mkfifo(incoming / ".late.jsonl.part")
    os.rename(incoming / ".late.jsonl.part", incoming / "late.jsonl")
    await asyncio.sleep(0.5)
    started = time.monotonic()
    daemon.stop()
    assert daemon.exit_code() == 0, daemon.logs()[-3000:]
    assert time.monotonic() - started < 10


async def test_a_file_larger_than_max_file_size_is_rejected_by_the_bytes_read(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    webhook_receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    incoming = tmp_path / "incoming"
    daemon = await filedrop_daemon(
        postbackd_daemon, webhook_receiver, incoming, max_file_size="4KiB"
    ).start()
    big = jsonl(*(event_payload(f"evt-big-{n}") for n in range(60)))
    assert len(big) > 4096
    place(incoming / "big.jsonl", big)
    place(incoming / "small.jsonl", jsonl(event_payload("evt-small")))

    await wait_for(lambda: (incoming / "rejected" / "big.jsonl.error").exists(), "big rejected")
    error = rejected_error(incoming, "big.jsonl")
    assert "max_file_size (4096 bytes)" in error, error
    await assert_delivered(webhook_receiver, ["evt-small"])
    await assert_ready(daemon)
    assert not [r for r in webhook_receiver.requests if r.json()["eventId"].startswith("evt-big")]


async def test_a_bad_line_costs_only_itself_with_either_json_codec(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    webhook_receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    """A lone surrogate escape, NaN and 1e999 in the middle of one chunk: those lines go to
    rejected/, their neighbours are stored — with orjson and with the stdlib fallback."""
    for codec in ("orjson", "stdlib"):
        incoming = tmp_path / f"incoming-{codec}"
        daemon = postbackd_daemon(
            triggers=[{"delivery": "webhook", "options": {"url": webhook_receiver.url("/hook")}}],
            sources={"filedrop": {"directory": str(incoming)}},
            env={"POSTBACKD_JSON_CODEC": codec},
        )
        await daemon.start()
        good = [event_payload(f"evt-{codec}-{n}", order=f"o-{n}") for n in range(6)]
        lines = [
            *(jsonl(e) for e in good[:2]),
            b'{"id":"bad-1","type":"order.shipped","customer":"acme","data":{"note":"\\ud800"}}\n',
            jsonl(good[2]),
            b'{"id":"bad-2","type":"order.shipped","customer":"acme","data":{"weight":NaN}}\n',
            b'{"id":"bad-3","type":"order.shipped","customer":"acme","data":{"weight":1e999}}\n',
            b'{"id":"bad-\\udc00","type":"order.shipped","customer":"acme","data":{}}\n',
            *(jsonl(e) for e in good[3:]),
        ]
        place(incoming / "mixed.jsonl", b"".join(lines))

        await assert_delivered(webhook_receiver, [e["id"] for e in good])
        await wait_for(lambda i=incoming: (i / "rejected" / "mixed.jsonl.error").exists(), "bad")
        error = rejected_error(incoming, "mixed.jsonl")
        for line in (3, 5, 6, 7):
            assert f"line {line}:" in error, error
        assert (incoming / "processed" / "mixed.jsonl").exists()
        await assert_ready(daemon)
        daemon.stop()
        assert daemon.exit_code() == 0
