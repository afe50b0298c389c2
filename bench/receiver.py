"""The webhook receiver of the benchmark: a bare asyncio.Protocol speaking just enough HTTP/1.1.

It must never be the bottleneck, so it parses nothing it does not need: the request head up to
Content-Length, the `webhook-id` header (the delivery id: duplicates and "nothing lost" are
counted on it) and the `"postedAt"` number in the body (end-to-end latency). Answers are
``200 OK`` with keep-alive, or ``500`` for a chosen share of *first* attempts (the flaky
scenario). "Down" closes the listening socket and every connection: connections are refused.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from multiprocessing.connection import Connection
from typing import Any, cast

from bench.child import new_event_loop, reply, serve_requests

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
FAIL = (
    b"HTTP/1.1 500 Internal Server Error\r\n"
    b"Content-Length: 4\r\nContent-Type: text/plain\r\n\r\nfail"
)
MAX_HEAD = 64 * 1024


class Tally:
    """What the receiver saw, per delivery id."""

    def __init__(self, flaky_percent: int = 0) -> None:
        self.flaky_percent = flaky_percent
        self.attempted: set[bytes] = set()
        self.delivered: set[bytes] = set()
        self.latencies: list[float] = []
        self.requests = 0
        self.duplicates = 0
        self.failed_first = 0
        self.no_id = 0
        self.first_at: float | None = None
        self.last_at: float | None = None

    def receive(self, head: bytes, body: bytes) -> bytes:
        now = time.time()
        self.requests += 1
        delivery_id = _header(head, b"\r\nwebhook-id:")
        if delivery_id is None:
            self.no_id += 1
            return OK
        if delivery_id not in self.attempted:
            self.attempted.add(delivery_id)
            if self.flaky_percent and zlib.crc32(delivery_id) % 100 < self.flaky_percent:
                self.failed_first += 1
                return FAIL
        if delivery_id in self.delivered:
            self.duplicates += 1
            return OK
        self.delivered.add(delivery_id)
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        posted = _posted_at(body)
        if posted is not None:
            self.latencies.append(now - posted)
        return OK

    def stats(self) -> dict[str, Any]:
        return {
            "delivered": len(self.delivered),
            "requests": self.requests,
            "duplicates": self.duplicates,
            "failed_first": self.failed_first,
            "no_id": self.no_id,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }


def _header(head: bytes, marker: bytes) -> bytes | None:
    start = head.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


def _posted_at(body: bytes) -> float | None:
    start = body.find(b'"postedAt"')
    if start < 0:
        return None
    start = body.find(b":", start) + 1
    end = start
    while end < len(body) and body[end] not in b",}\r\n":
        end += 1
    try:
        return float(body[start:end])
    except ValueError:
        return None


class _Http(asyncio.Protocol):
    def __init__(self, server: ReceiverServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    self._close()
                return
            head = bytes(buffer[: end + 2]).lower()
            length_text = _header(head, b"\r\ncontent-length:")
            length = int(length_text) if length_text else 0
            total = end + 4 + length
            if len(buffer) < total:
                return
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            answer = self.server.tally.receive(head, body)
            assert self.transport is not None
            self.transport.write(answer)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ReceiverServer:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.tally = Tally()
        self.connections: set[_Http] = set()
        self._server: asyncio.Server | None = None

    async def up(self) -> None:
        if self._server is None:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: _Http(self), self.host, self.port, reuse_address=True, backlog=1024
            )
            self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for connection in list(self.connections):
            connection._close()

    async def handle(self, request: tuple[Any, ...]) -> Any:
        command, *args = request
        if command == "stats":
            return self.tally.stats()
        if command == "latencies":
            return list(self.tally.latencies)  # copied on the loop, sent from the pipe thread
        if command == "reset":
            self.tally = Tally(flaky_percent=int(args[0]) if args else 0)
            return None
        if command == "up":
            await self.up()
            return self.port
        if command == "down":
            await self.down()
            return None
        raise ValueError(f"unknown receiver command {command!r}")


def serve(conn: Connection, host: str = "127.0.0.1") -> None:
    """The receiver process: listens, answers the harness's requests, ends on "stop"."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    server = ReceiverServer(host, 0)
    try:
        loop.run_until_complete(server.up())
        reply(conn, server.port)
        serve_requests(conn, loop, server.handle)
        loop.run_forever()
        loop.run_until_complete(server.down())
    finally:
        loop.close()
