"""Hostile SFTP peers against a real daemon with a batching sftp trigger: a server that
accepts and says nothing, one that answers with garbage instead of SSH, and one that speaks SSH
with an unknown key. Each time the daemon stays ready, the file's deliveries stay pending with
a reason in their request log, and nothing is uploaded or lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from postbackd.testing import PostbackdDaemon, event_payload
from postbackd.testing.waiting import until_async
from tests.faults.daemon_checks import assert_still_ready, log_lines, no_traceback

ROWS = "{{ orderId }}"


@pytest.fixture(params=["silent", "garbage"])
async def hostile_port(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, int]]:
    """A TCP server on 127.0.0.1 that never speaks SSH."""
    kind = request.param
    connections: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        if kind == "garbage":
            writer.write(b"\xff\xfeHTTP/1.1 200 OK\r\n" + b"\x00" * 70000 + b"\r\n")
            await writer.drain()
        await reader.read()  # silent: hold the connection open, answer nothing

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield kind, server.sockets[0].getsockname()[1]
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_peer_that_is_not_an_ssh_server(
    postbackd_daemon: Callable[..., PostbackdDaemon], hostile_port: tuple[str, int]
) -> None:
    kind, port = hostile_port
    daemon = postbackd_daemon(
        triggers=[
            {
                "name": "files",
                "events": ["order.shipped"],
                "template": "rows",
                "delivery": "sftp",
                "batch": "1s",
                "retry_schedule": ["1s"] * 30,
                "options": {
                    "host": "127.0.0.1",
                    "port": port,
                    "username": "u",
                    "password": "p",
                    "host_key_fingerprint": "SHA256:" + "A" * 43,
                    "connect_timeout": "1s",
                    "timeout": "3s",
                },
            }
        ]
    )
    daemon.write("rows.toml", {"template": [{"name": "rows", "format": "text", "body": ROWS}]})
    await daemon.start()
    await daemon.submit(*(event_payload(f"h-{n}", order=f"o-{n}") for n in range(3)))
    ids = [d["id"] for d in await daemon.deliveries()]

    async def refused() -> bool:
        return bool((await daemon.delivery(ids[0]))["attempts"])

    await until_async(refused, 20, f"an attempt against the {kind} peer")
    for delivery_id in ids:
        detail = await daemon.delivery(delivery_id)
        assert detail["delivery"]["state"] == "pending"
    error = (await daemon.delivery(ids[0]))["attempts"][0]["error"]
    expected = {"silent": " did not answer within 1s", "garbage": ": SSH error: "}[kind]
    assert error.startswith(f"127.0.0.1:{port}{expected}"), error
    await assert_still_ready(daemon)
    assert no_traceback(daemon.logs())
    assert log_lines(daemon, "shipment file attempt")
