"""A real webhook receiver for tests: an aiohttp server on 127.0.0.1 that records requests.

Answers can be scripted per path: a list of statuses consumed one per request (the last one
repeats), so "fail twice, then accept" is ``receiver.script("/hook", [500, 500, 200])``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Received:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    _scripts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    delays: dict[str, float] = field(default_factory=dict)  # path → seconds before answering
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Condition | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def script(self, path: str, statuses: list[int]) -> None:
        self._scripts[path] = list(statuses)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._arrived = asyncio.Condition()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            Received(request.path, request.method, dict(request.headers), body, time.time())
        )
        assert self._arrived is not None
        async with self._arrived:
            self._arrived.notify_all()
        if request.path in self.delays:
            await asyncio.sleep(self.delays[request.path])
        statuses = self._scripts.get(request.path)
        status = 200
        if statuses:
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    def ok_requests(self, path: str | None = None) -> list[Received]:
        return [r for r in self.requests if path is None or r.path == path]

    async def wait_for(
        self, count: int, *, timeout: float = 10.0, path: str | None = None
    ) -> list[Received]:
        """Wait until `count` requests (to `path`) arrived; fails after `timeout` seconds."""
        assert self._arrived is not None
        deadline = time.monotonic() + timeout
        async with self._arrived:
            while len(self.ok_requests(path)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} requests, got {len(self.ok_requests(path))} "
                        f"within {timeout}s"
                    )
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    pass
        return self.ok_requests(path)

    def webhook_ids(self) -> dict[str, set[str]]:
        """Event id (the payload's ``eventId``) → the webhook-ids it arrived with."""
        seen: dict[str, set[str]] = {}
        for request in self.requests:
            event_id = json.loads(request.body)["eventId"]
            seen.setdefault(event_id, set()).add(request.headers["webhook-id"])
        return seen

    async def wait_events(self, wanted: set[str], timeout: float = 20.0) -> None:
        """Wait until every event id in `wanted` arrived; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.webhook_ids()):
            if time.monotonic() > deadline:
                missing = sorted(wanted - set(self.webhook_ids()))
                raise AssertionError(
                    f"{len(missing)} events not delivered in {timeout}s: {missing[:5]}"
                )
            await asyncio.sleep(0.1)
