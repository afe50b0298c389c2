"""File-drop intake end to end: files dropped by other processes → spool → webhook.

The daemon runs as a subprocess watching a real directory; files are written by separate
processes (a writer that closes between chunks and renames at the end, a plain ``cp``); the
receiver is a real aiohttp server. What a file becomes — ``processed/``, ``rejected/`` with
``NAME.error`` — is read from the directory itself, as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from postbackd.testing import PostbackdDaemon, WebhookReceiver, free_port
from tests.configs import event, webhook_config

# Writes the first half, closes, pauses, appends the rest, then renames `TARGET.tmp` → TARGET:
# a writer that closes between chunks, made safe by the write-then-rename convention.
CHUNKED_WRITER = """
import os, sys, time
source, target = sys.argv[1], sys.argv[2]
data = open(source, "rb").read()
partial = target + ".tmp"
with open(partial, "wb") as out:
    out.write(data[: len(data) // 2])
time.sleep(1.0)
with open(partial, "ab") as out:
    out.write(data[len(data) // 2 :])
os.rename(partial, target)
"""


def filedrop_daemon(
    make: Callable[..., PostbackdDaemon], receiver: WebhookReceiver, tmp_path: Path, incoming: Path
) -> PostbackdDaemon:
    """A daemon with [sources.filedrop] on `incoming` beside [sources.http] (for /readyz)."""
    port = free_port()
    files = webhook_config(receiver.url("/hook"), port=port, spool=tmp_path / "drop.db")
    files["filedrop.toml"] = f'[sources.filedrop]\ndirectory = "{incoming}"\n'
    daemon = make(receiver.url("/hook"), files=files)
    daemon.port = port
    return daemon


async def wait_exists(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout}s")
        await asyncio.sleep(0.05)


def drops_left(incoming: Path) -> list[str]:
    return sorted(p.name for p in incoming.iterdir() if p.is_file())


def jsonl(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def place(path: Path, content: bytes) -> None:
    """Drop a file the safe way, from the test itself: write a .tmp, then rename."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(content)
    partial.rename(path)


async def run(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(*argv)
    assert await asyncio.wait_for(process.wait(), timeout=15) == 0, argv


async def test_files_written_by_other_processes_are_delivered(receiver, daemon_factory, tmp_path):
    incoming, outbox = tmp_path / "incoming", tmp_path / "outbox"
    outbox.mkdir()
    daemon = filedrop_daemon(daemon_factory, receiver, tmp_path, incoming)
    daemon.launch()
    await daemon.wait_ready()
    single = [event(f"w-{n}", order=f"o-w{n}") for n in range(3)]
    copied = [event(f"c-{n}", order=f"o-c{n}") for n in range(50)]
    (outbox / "single.json").write_text(json.dumps(single, indent=2))
    (outbox / "copied.jsonl").write_bytes(jsonl(copied))

    await asyncio.gather(
        run(
            sys.executable,
            "-c",
            CHUNKED_WRITER,
            str(outbox / "single.json"),
            str(incoming / "x.json"),
        ),
        run("cp", str(outbox / "copied.jsonl"), str(incoming / "copied.jsonl")),
    )
    wanted = {e["id"] for e in single + copied}
    await receiver.wait_events(wanted)
    await wait_exists(incoming / "processed" / "x.json")
    await wait_exists(incoming / "processed" / "copied.jsonl")
    await asyncio.sleep(0.5)  # time for a wrongly doubled read to show

    assert {k: len(v) for k, v in receiver.webhook_ids().items()} == dict.fromkeys(wanted, 1)
    assert len(receiver.requests) == len(wanted)
    assert drops_left(incoming) == []
    assert list((incoming / "rejected").iterdir()) == []  # the half-written .tmp was never read
    assert "filedrop: file accepted" in daemon.logs()


async def test_bad_files_are_rejected_and_good_jsonl_lines_delivered(
    receiver, daemon_factory, tmp_path
):
    incoming = tmp_path / "incoming"
    daemon = filedrop_daemon(daemon_factory, receiver, tmp_path, incoming)
    daemon.launch()
    await daemon.wait_ready()
    no_type = {k: v for k, v in event("h-4").items() if k != "type"}
    half_lines = [
        json.dumps(event("h-1", order="o-h1")).encode(),
        b'{"id": "h-2", "type": ',
        json.dumps(event("h-3", order="o-h3")).encode(),
        json.dumps(no_type).encode(),
        b"",
        json.dumps(event("h-6", order="o-h6")).encode(),
    ]
    place(incoming / "broken.json", b'{"id": "b-1", "type": "order.shipped", ')
    place(
        incoming / "batch.json",
        json.dumps([event("a-0"), event("a-1"), {**event("a-2"), "data": []}]).encode(),
    )
    place(incoming / "half.jsonl", b"\n".join(half_lines) + b"\n")

    await receiver.wait_events({"h-1", "h-3", "h-6"})
    rejected = incoming / "rejected"
    for name in ("broken.json.error", "batch.json.error", "half.jsonl.error"):
        await wait_exists(rejected / name)
    await asyncio.sleep(0.5)

    broken = (rejected / "broken.json.error").read_text()
    assert "nothing in it was accepted" in broken and "malformed JSON" in broken
    assert (rejected / "broken.json").read_bytes().startswith(b'{"id": "b-1"')
    batch = (rejected / "batch.json.error").read_text()
    assert "[2].data" in batch and "all-or-nothing" in batch
    half = (rejected / "half.jsonl.error").read_text()
    assert "2 line(s) rejected" in half and "the other 3 event(s) were accepted" in half
    assert "\nline 2: malformed JSON" in half and "\nline 4: type: required" in half
    assert (rejected / "half.jsonl").read_bytes().splitlines() == [half_lines[1], half_lines[3]]
    assert (incoming / "processed" / "half.jsonl").exists()
    assert sorted(receiver.webhook_ids()) == ["h-1", "h-3", "h-6"]  # nothing of batch.json
    assert drops_left(incoming) == []
    status, metrics = await daemon.get("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    rejected = {
        sample.labels["reason"]: sample.value
        for sample in families["postbackd_events_rejected"].samples
        if sample.name.endswith("_total") and sample.labels.get("source") == "filedrop"
    }
    assert rejected["invalid"] >= 4  # broken.json, batch.json, two lines of half.jsonl


async def test_files_present_before_start_are_picked_up(receiver, daemon_factory, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    early = [event(f"e-{n}", order=f"o-e{n}") for n in range(10)]
    (incoming / "early.jsonl").write_bytes(jsonl(early))
    (incoming / "one.json").write_text(json.dumps(event("e-one")))
    (incoming / "notes.txt").write_text("not an event file: left alone")
    daemon = filedrop_daemon(daemon_factory, receiver, tmp_path, incoming)
    daemon.launch()
    await daemon.wait_ready()

    await receiver.wait_events({e["id"] for e in early} | {"e-one"})
    await wait_exists(incoming / "processed" / "one.json")
    await wait_exists(incoming / "processed" / "early.jsonl")
    assert drops_left(incoming) == ["notes.txt"]


async def test_kill_9_mid_directory_then_restart_delivers_every_event_once(
    receiver, daemon_factory, tmp_path
):
    incoming = tmp_path / "incoming"
    daemon = filedrop_daemon(daemon_factory, receiver, tmp_path, incoming)
    daemon.launch()
    await daemon.wait_ready()
    batches = {
        f"batch-{f:02d}.jsonl": [event(f"k-{f}-{n}", order=f"o-{f}-{n}") for n in range(20)]
        for f in range(30)
    }
    for name, events in batches.items():
        place(incoming / name, jsonl(events))

    await receiver.wait_for(40, timeout=15)  # the first deliveries: the directory is half done
    daemon.signal(signal.SIGKILL)
    await daemon.wait_exit()
    left_at_kill = [n for n in drops_left(incoming) if n.startswith("batch-")]
    assert left_at_kill, "every file was done before the kill: the test proved nothing"

    daemon.launch()
    await daemon.wait_ready()
    wanted = {e["id"] for events in batches.values() for e in events}
    await receiver.wait_events(wanted, timeout=40)
    status, body = await daemon.get("/v1/deliveries?limit=1000")
    assert status == 200, body
    deliveries = body["deliveries"]
    deadline = time.monotonic() + 15
    while any(d["state"] != "done" for d in deliveries) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        deliveries = (await daemon.get("/v1/deliveries?limit=1000"))[1]["deliveries"]

    assert sorted(d["event_id"] for d in deliveries) == sorted(wanted)  # one delivery per event
    assert {d["state"] for d in deliveries} == {"done"}
    ids = receiver.webhook_ids()
    assert all(len(hooks) == 1 for hooks in ids.values()), "a duplicate changed its webhook-id"
    assert {d["event_id"]: d["id"] for d in deliveries} == {
        k: next(iter(v)) for k, v in ids.items()
    }
    assert drops_left(incoming) == []
    assert sorted(p.name for p in (incoming / "processed").iterdir()) == sorted(batches)
    assert list((incoming / "rejected").iterdir()) == []
