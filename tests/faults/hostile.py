"""What every hostile-input test needs beside the harness (`postbackd.testing`): raw HTTP over
a socket (headers no client library would send), and the two checks each test ends with — the
daemon is still ready, and every event it acknowledged reached the receiver.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postbackd.testing import PostbackdDaemon, WebhookReceiver, event_payload


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_http(port: int, request: bytes, *, timeout: float = 10.0) -> RawAnswer:
    """Send `request` as it is (any header bytes) and read the answer to the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(int(lines[0].split()[1]), headers, body)


def post_request(
    path: str, body: bytes, headers: Iterable[tuple[str, bytes]] = (), method: str = "POST"
) -> bytes:
    """An HTTP/1.1 request with `body` and raw header values (sent byte for byte)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers]
    lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def assert_error_json(answer: RawAnswer, status: int) -> dict[str, Any]:
    """A 4xx is JSON ``{"error", "field"}`` with a message that says something."""
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
    document = answer.json()
    assert set(document) == {"error", "field"}, document
    assert isinstance(document["error"], str) and len(document["error"]) > 10, document
    return dict(document)


async def assert_ready(daemon: PostbackdDaemon) -> None:
    """The daemon runs and says ready, and its log holds no traceback."""
    assert daemon.exit_code() is None, f"the daemon exited:\n{daemon.logs()[-3000:]}"
    status, answer = await daemon.request("GET", "/readyz")
    assert status == 200, answer
    assert "Traceback" not in daemon.logs(), daemon.logs()[-5000:]


async def assert_delivered(
    receiver: WebhookReceiver,
    event_ids: Iterable[str],
    *,
    daemon: PostbackdDaemon | None = None,
    timeout: float = 20.0,
) -> None:
    """Every one of `event_ids` reached the receiver (nothing acknowledged was lost); with
    `daemon`, also its delivery is ``done`` there (the receiver said 2xx, it was recorded) —
    needed where the receiver answered some attempts with errors."""
    wanted = set(event_ids)

    def arrived() -> set[str]:
        return {r.json()["eventId"] for r in receiver.requests} & wanted

    async def done() -> set[str]:
        if daemon is None:
            return wanted
        finished = await daemon.deliveries(state="done", limit="1000")
        return {d["event_id"] for d in finished} & wanted

    deadline = asyncio.get_running_loop().time() + timeout
    while arrived() != wanted or await done() != wanted:
        assert asyncio.get_running_loop().time() < deadline, (
            f"not delivered within {timeout}s: {sorted(wanted - arrived())}, "
            f"not done: {sorted(wanted - await done())}"
        )
        await asyncio.sleep(0.1)


async def submit_and_deliver(
    daemon: PostbackdDaemon, receiver: WebhookReceiver, event_id: str
) -> None:
    """A good event after the hostile input is still accepted and delivered."""
    await daemon.submit(event_payload(event_id))
    await assert_delivered(receiver, [event_id])


def set_http_settings(daemon: PostbackdDaemon, **settings: Any) -> None:
    """Add settings to the generated ``[sources.http]`` table (it keeps the daemon's port)."""
    path = daemon.conf_dir / "postbackd.toml"
    config = tomllib.loads(path.read_text())
    config["sources"]["http"].update(settings)
    daemon.write("postbackd.toml", config)


def jsonl(*events: Any) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def place(path: Path, content: bytes) -> None:
    """Drop a file the safe way: write a .tmp beside it, then rename."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(content)
    partial.rename(path)
