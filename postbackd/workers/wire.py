"""The socket between a daemon and one of its attempt workers: messages in length-prefixed frames.

Both ends are this program, started from the same files, over a socket pair nobody else holds
(the worker's standard input): the messages are pickled frozen dataclasses. Everything sent in
one turn of the event loop goes out in one frame — under load a frame carries dozens of
attempts or answers, so the cost of a system call and a pickle header is shared by all.

The socket is also the worker's lifeline: when the daemon exits, however it exits, the worker
reads end-of-file and stops.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from postbackd.plugin import Delivery, Outcome

HEADER = 4  # bytes of big-endian length before each frame
MOST = 1 << 31  # a larger frame is a bug, not a message: the connection is dropped
BUFFER = 1 << 20  # socket buffers: a burst of frames waits in the kernel, not in a write


@dataclass(frozen=True, slots=True)
class Call:
    """Main process → worker: make attempt `number` of `delivery` with trigger `trigger` as
    configured in the generation `identity` (`options`: rendered ones, None for the trigger's)."""

    number: int
    identity: str
    trigger: str
    delivery: Delivery
    options: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Answer:
    """Worker → main process: what call `number` gave. `outcome` None: not made, because the
    worker runs another configuration (`identity`, the worker's) or is stopping."""

    number: int
    outcome: Outcome | None
    started: float = 0.0
    duration: float = 0.0
    identity: str = ""


@dataclass(frozen=True, slots=True)
class Ready:
    """Worker → main process, once, first: started, configuration loaded; send attempts now."""

    pid: int


class FrameError(Exception):
    """The peer sent something that is not a frame of this protocol (a bug; never user input)."""


class Channel:
    """One end of the socket: `send` queues a message, `receive` returns the next frame's."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending: list[Any] = []

    @classmethod
    async def over(cls, sock: socket.socket) -> Channel:
        # A worker's end comes as its standard input, a blocking descriptor: a write that
        # found the buffer full would stop its whole event loop until the other side read.
        sock.setblocking(False)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, BUFFER)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=BUFFER)
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    def send(self, message: Call | Answer | Ready) -> None:
        """Queue `message`; the frame goes out at the end of this turn of the event loop."""
        if self._writer.is_closing():
            return  # the peer is gone: its reader ends and says so
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(message)

    async def receive(self) -> list[Any] | None:
        """The messages of the next frame; None once the peer has closed its end."""
        try:
            header = await self._reader.readexactly(HEADER)
            size = int.from_bytes(header, "big")
            if size > MOST:
                raise FrameError(f"a frame of {size} bytes announced")
            data = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        messages = pickle.loads(data)
        if not isinstance(messages, list):
            raise FrameError(f"a frame of {type(messages).__name__}, not a list of messages")
        return messages

    async def drain(self) -> None:
        """Wait until every queued message has been handed to the socket."""
        while self._pending:
            await asyncio.sleep(0)
        if not self._writer.is_closing():
            await self._writer.drain()

    def close(self) -> None:
        self._pending.clear()
        self._writer.close()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch or self._writer.is_closing():
            return
        data = _dumps(batch)
        self._writer.write(len(data).to_bytes(HEADER, "big") + data)


def _dumps(batch: list[Any]) -> bytes:
    """The frame of `batch`. A plugin may have put into an outcome's request or response record
    what cannot be pickled: that outcome travels without the records, and says why."""
    try:
        return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return pickle.dumps([_portable(message) for message in batch], pickle.HIGHEST_PROTOCOL)


def _portable(message: Any) -> Any:
    try:
        pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        return message
    except Exception as exc:
        if not isinstance(message, Answer) or message.outcome is None:
            raise
        note = f"(the request/response record could not be sent to the main process: {exc!r})"
        detail = f"{message.outcome.detail} {note}" if message.outcome.detail else note
        return replace(
            message,
            outcome=replace(message.outcome, request=None, response=None, detail=detail),
        )
