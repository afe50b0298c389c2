"""The SMTP server of the email scenario: aiosmtpd in its own process, counting messages.

Messages are told apart by their Message-ID (postbackd derives it from the delivery id), so
duplicates and "nothing lost" are counted as for webhooks.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection
from typing import Any

from bench.child import new_event_loop, reply, serve_requests


class MailTally:
    """The aiosmtpd handler: counts messages and distinct Message-IDs."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.ids: set[bytes] = set()
        self.messages = 0
        self.first_at: float | None = None
        self.last_at: float | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.time()
        self.messages += 1
        content: bytes = envelope.original_content or envelope.content
        start = content.lower().find(b"\nmessage-id:")
        key = content[start : content.find(b"\n", start + 1)].strip() if start >= 0 else b""
        if key not in self.ids:
            self.ids.add(key)
            self.first_at = self.first_at or now
            self.last_at = now
        return "250 OK"

    def stats(self) -> dict[str, Any]:
        return {
            "delivered": len(self.ids),
            "messages": self.messages,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }


def serve(conn: Connection, host: str = "127.0.0.1") -> None:
    """The SMTP server process: answers "stats" and "reset", ends on "stop"."""
    from aiosmtpd.smtp import SMTP

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    tally = MailTally()

    async def handle(request: tuple[Any, ...]) -> Any:
        if request[0] == "stats":
            return tally.stats()
        if request[0] == "reset":
            tally.reset()
            return None
        raise ValueError(f"unknown SMTP server command {request[0]!r}")

    def factory() -> SMTP:
        return SMTP(tally, hostname="bench.smtp", ident="bench", loop=loop)

    try:
        server = loop.run_until_complete(loop.create_server(factory, host, 0))
        reply(conn, server.sockets[0].getsockname()[1])
        serve_requests(conn, loop, handle)
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.close()
