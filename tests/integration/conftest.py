"""Integration fixtures: a stand-in for systemd's notify socket (a unix datagram socket).

Give the daemon ``NOTIFY_SOCKET=notify.path``; `NotifyListener` keeps every datagram with its
arrival time, so a test can check what was announced and in which order.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class NotifyListener:
    """Reads datagrams from the notify socket into `messages` (arrival time, lines)."""

    path: str
    sock: socket.socket
    messages: list[tuple[float, list[str]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            self.messages.append((time.monotonic(), data.decode().split("\n")))
            self.arrived.set()

    def lines(self) -> list[str]:
        return [line for _, lines in self.messages for line in lines]

    async def wait_for(self, line: str, *, after: int = 0, timeout: float = 10.0) -> int:
        """Index (in `messages`) of the first message at or after `after` holding `line`."""
        deadline = time.monotonic() + timeout
        while True:
            for index, (_, lines) in enumerate(self.messages[after:], start=after):
                if line in lines:
                    return index
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {line!r} within {timeout}s; got {self.messages}"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                pass


@pytest.fixture
async def notify() -> AsyncIterator[NotifyListener]:
    directory = tempfile.mkdtemp(prefix="pbn-")  # short: unix socket paths are limited
    path = str(Path(directory) / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    listener = NotifyListener(path, sock)
    task = asyncio.create_task(listener.run())
    try:
        yield listener
    finally:
        task.cancel()
        sock.close()
        shutil.rmtree(directory)
