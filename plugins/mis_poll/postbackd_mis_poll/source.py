"""`MisPollSource`: fetch order-status changes from an MIS and submit them, at least once.

The MIS protocol (see the README): ``GET url?since=CURSOR&limit=N`` answers
``{"events": [event, ...], "cursor": "NEXT"}`` — events in postbackd's envelope (or
CloudEvents), ``cursor`` an opaque string for the next call (absent or null: unchanged).

Per page: each event is submitted and ``submit`` returns only once it is durable in the
spool; only then is the cursor saved (`postbackd_mis_poll.state`) and acknowledged upstream
(``ack_url``). If postbackd cannot store (``SpoolUnavailable``) or the MIS fails, the cursor
stays and the page is fetched again after a backoff; the events already stored come back as
duplicates and are dropped by id. An event the MIS sends malformed is logged and skipped, so
one bad record never blocks the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from postbackd.plugin import EventRejected, SpoolUnavailable, Submit, parse_event
from postbackd_mis_poll.settings import PollSettings
from postbackd_mis_poll.state import PollState, read_state, write_state

log = logging.getLogger("postbackd_mis_poll")
EXCERPT = 300


class PollFailed(Exception):
    """This round cannot go on (MIS unreachable or odd answer, spool unavailable)."""


class MisPollSource:
    """Registered as ``mis-poll``; built from ``[sources.mis-poll]`` (see `PollSettings`)."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = PollSettings.parse(settings)
        self.state = PollState()
        self.ready = False
        self.rejected = 0
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, submit: Submit) -> asyncio.Task[None]:
        """Read the saved cursor and start polling; the task returned is watched by postbackd."""
        self.state = await asyncio.to_thread(read_state, self.settings.state_file)
        headers = {"Authorization": f"Bearer {self.settings.token}"} if self.settings.token else {}
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=self.settings.timeout)
        )
        self._task = asyncio.create_task(self._poll_forever(submit), name="mis-poll")
        return self._task

    async def stop(self) -> None:
        self.ready = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _poll_forever(self, submit: Submit) -> None:
        failures = 0
        while True:
            try:
                more = await self.poll_once(submit)
            except PollFailed as exc:
                self.ready = False
                delay = min(self.settings.interval * 2**failures, self.settings.max_backoff)
                failures += 1
                log.warning("mis-poll: %s; trying again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            self.ready = True
            if not more:
                await asyncio.sleep(self.settings.interval)

    async def poll_once(self, submit: Submit) -> bool:
        """One round: acknowledge what is pending, fetch a page, store it, advance the cursor.

        Returns whether the page was full (more is waiting). Raises PollFailed.
        """
        if not self.state.acked and self.settings.ack_url is not None:
            await self._acknowledge()
        events, cursor = await self._fetch()
        for index, item in enumerate(events):
            await self._store(submit, item, index)
        if cursor is not None and cursor != self.state.cursor:
            await self._save(PollState(cursor, acked=self.settings.ack_url is None))
            if self.settings.ack_url is not None:
                await self._acknowledge()
        return len(events) >= self.settings.batch

    async def _fetch(self) -> tuple[list[Any], str | None]:
        params = {"limit": str(self.settings.batch)}
        if self.state.cursor is not None:
            params["since"] = self.state.cursor
        answer = await self._request("GET", self.settings.url, params=params)
        if not isinstance(answer, dict) or not isinstance(answer.get("events"), list):
            raise PollFailed(
                f'GET {self.settings.url} did not answer {{"events": [...], "cursor": ...}}'
            )
        cursor = answer.get("cursor")
        return answer["events"], None if cursor is None else str(cursor)

    async def _store(self, submit: Submit, item: Any, index: int) -> None:
        try:
            await submit(parse_event(item, prefix=f"events[{index}]"))
        except EventRejected as exc:
            self.rejected += 1
            ident = item.get("id") if isinstance(item, dict) else None
            log.error("mis-poll: skipped an invalid event (id %r) from the MIS: %s", ident, exc)
        except SpoolUnavailable as exc:
            raise PollFailed(
                f"postbackd cannot store events now ({exc}); the cursor stays at "
                f"{self.state.cursor!r}"
            ) from exc

    async def _acknowledge(self) -> None:
        assert self.settings.ack_url is not None
        await self._request("POST", self.settings.ack_url, json={"cursor": self.state.cursor})
        await self._save(PollState(self.state.cursor, acked=True))

    async def _save(self, state: PollState) -> None:
        try:
            await asyncio.to_thread(write_state, self.settings.state_file, state)
        except OSError as exc:
            raise PollFailed(
                f"cannot save the cursor to {self.settings.state_file}: {exc}"
            ) from exc
        self.state = state

    async def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        assert self._session is not None, "start() first"
        try:
            async with self._session.request(method, url, **kwargs) as answer:
                if answer.status >= 300:
                    text = (await answer.text(errors="replace"))[:EXCERPT]
                    raise PollFailed(f"{method} {url} answered {answer.status}: {text.strip()}")
                if method == "POST":
                    return None
                try:
                    return await answer.json(content_type=None)
                except ValueError as exc:
                    raise PollFailed(f"{method} {url} answered invalid JSON: {exc}") from exc
        except TimeoutError as exc:
            raise PollFailed(
                f"{method} {url}: no answer within {self.settings.timeout:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise PollFailed(f"{method} {url}: {exc or type(exc).__name__}") from exc
