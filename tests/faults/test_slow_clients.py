"""Slow clients against a real daemon: slow headers (slowloris), slow bodies, too many sockets.

Each slow connection dribbles a byte now and then and would hold its file descriptor for ever;
the daemon must cut it (408 within ``header_timeout``/``body_timeout``), keep answering
``/readyz`` and accepting events while the connection cap is full of them, and lose nothing.
Both listeners are covered: ``[sources.http]`` and ``[daemon] admin_listen``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from postbackd.testing import PostbackdDaemon, WebhookReceiver, event_payload
from tests.faults.hostile import (
    assert_delivered,
    assert_ready,
    post_request,
    raw_http,
    set_http_settings,
)

SLOW_HEADERS = 24
SLOW_BODIES = 4
CAP = 16


async def slow_client(
    port: int, opening: bytes, drip: bytes, *, limit: float
) -> tuple[float, bytes]:
    """Send `opening`, then one `drip` every 0.2 s; returns (seconds until the server closed
    the connection, what it answered). Bounded by `limit` seconds."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        writer.write(opening)
        while time.monotonic() - started < limit:
            try:
                chunk = await asyncio.wait_for(reader.read(4096), 0.2)
            except TimeoutError:
                chunk = None
            except ConnectionError:  # closed with our drips unread: a reset
                break
            if chunk == b"":
                break  # closed by the server
            if chunk:
                answer += chunk
                continue
            try:
                writer.write(drip)
                await writer.drain()
            except ConnectionError:
                break
    finally:
        writer.close()
    return time.monotonic() - started, answer


def configure(
    make: Callable[..., PostbackdDaemon], receiver: WebhookReceiver, listener: str
) -> PostbackdDaemon:
    limits = {"header_timeout": "1500ms", "body_timeout": "1500ms", "max_connections": CAP}
    trigger = {"delivery": "webhook", "options": {"url": receiver.url("/hook")}}
    if listener == "http":
        daemon = make(triggers=[trigger])
        set_http_settings(daemon, **limits)
        return daemon
    admin = {f"admin_{key}": value for key, value in limits.items()}
    return make(triggers=[trigger], sources={"http": None}, daemon=admin)


@pytest.mark.parametrize("listener", ["http", "admin"])
async def test_slow_clients_are_cut_off_and_the_daemon_stays_ready(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    webhook_receiver: WebhookReceiver,
    listener: str,
) -> None:
    daemon = configure(postbackd_daemon, webhook_receiver, listener)
    await daemon.start()
    port = daemon.port
    path = b"/v1/events" if listener == "http" else b"/v1/render"  # routes that read a body
    head = b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    body_head = head + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
    slow: list[asyncio.Task[tuple[float, bytes]]] = [
        asyncio.create_task(slow_client(port, head, b"X-Slow: 1\r\n", limit=12.0))
        for _ in range(SLOW_HEADERS)
    ]
    slow += [
        asyncio.create_task(slow_client(port, body_head, b" ", limit=12.0))
        for _ in range(SLOW_BODIES)
    ]
    await asyncio.sleep(0.5)  # they are connected and dribbling; the cap is full

    accepted: list[str] = []
    for n in range(6):  # real clients are served meanwhile
        started = time.monotonic()
        status, answer = await daemon.request("GET", "/readyz")
        assert status == 200, answer
        if listener == "http":
            await daemon.submit(event_payload(f"evt-slow-{n}", order=f"o-{n}"))
            accepted.append(f"evt-slow-{n}")
        assert time.monotonic() - started < 2.0
        await asyncio.sleep(0.2)

    results = await asyncio.gather(*slow)
    for seconds, answer in results:
        assert seconds < 6.0, f"a slow client was held {seconds:.1f}s"
        if answer:
            status_line = answer.split(b"\r\n", 1)[0]
            assert status_line.split()[1] in (b"408", b"503"), answer[:200]
    timed_out = [a for _s, a in results[SLOW_HEADERS:] if b" 408 " in a.split(b"\r\n", 1)[0]]
    assert timed_out, "no slow body was answered 408"
    document: dict[str, Any] = json.loads(timed_out[0].partition(b"\r\n\r\n")[2])
    assert "body_timeout" in document["error"] and document["field"] == "body"

    if accepted:
        await assert_delivered(webhook_receiver, accepted)
    await assert_ready(daemon)
    # A request sent at normal speed after all this still goes through on a fresh connection.
    answer = await raw_http(port, post_request("/readyz", b"", method="GET"))
    assert answer.status == 200
