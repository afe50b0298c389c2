"""postbackd-mis-poll against a real HTTP server playing the MIS.

The fake MIS runs on postbackd's `webhook_receiver` (a real aiohttp server on 127.0.0.1);
`RecordingSubmit` stands in for postbackd's intake in the unit tests, and one test runs the
whole path through a daemon subprocess.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import postbackd_mis_poll
import pytest
from aiohttp import web
from postbackd_mis_poll import MisPollSource

from postbackd.plugin import SpoolUnavailable
from postbackd.testing import RecordingSubmit, event_payload, plugin_host


@dataclass
class FakeMis:
    """Serves ``GET /changes?since=N&limit=M`` from a list; cursor = index of the last one."""

    events: list[dict[str, Any]]
    failures: int = 0
    seen_since: list[str | None] = field(default_factory=list)
    acks: list[tuple[Any, int]] = field(default_factory=list)
    submitted: RecordingSubmit | None = None

    def install(self, receiver) -> None:
        receiver.handle("GET", "/changes", self.changes)
        receiver.handle("POST", "/ack", self.ack)

    async def changes(self, request: web.Request) -> web.Response:
        self.seen_since.append(request.query.get("since"))
        if self.failures:
            self.failures -= 1
            return web.Response(status=500, text="database is restarting")
        start = int(request.query.get("since", "0"))
        page = self.events[start : start + int(request.query["limit"])]
        cursor = str(start + len(page)) if page else None
        return web.json_response({"events": page, "cursor": cursor})

    async def ack(self, request: web.Request) -> web.Response:
        stored = len(self.submitted.events) if self.submitted else -1
        self.acks.append(((await request.json())["cursor"], stored))
        return web.Response(status=204)


def settings(receiver, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "url": receiver.url("/changes"),
        "ack_url": receiver.url("/ack"),
        "state_file": str(tmp_path / "cursor.json"),
        "interval": "50ms",
        "max_backoff": "200ms",
        "batch": 2,
        **extra,
    }


def events(count: int) -> list[dict[str, Any]]:
    return [event_payload(f"mis-{i}", order=f"o-{i}") for i in range(count)]


async def run_until(
    source: MisPollSource, submit: RecordingSubmit, count: int, receiver=None, acks: int = 0
) -> None:
    """Run the source until `count` events were submitted (and `acks` acks arrived)."""
    await source.start(submit)
    try:
        await submit.wait_for(count)
        if acks:
            await receiver.wait_for(acks, path="/ack")
    finally:
        await source.stop()


def test_registers_as_mis_poll():
    host = plugin_host(postbackd_mis_poll)
    assert host.sources["mis-poll"].value is MisPollSource


def test_settings_errors_are_all_named():
    with pytest.raises(ValueError) as caught:
        MisPollSource({"url": "mis.local/changes", "interval": "soon", "batch": 0, "x": 1})
    message = str(caught.value)
    assert "unknown setting 'x'" in message
    assert "url must be an http(s) URL, got 'mis.local/changes'" in message
    assert "state_file is required" in message
    assert "interval: invalid duration 'soon'" in message
    assert "batch must be a whole number from 1 to 10000, got 0" in message


async def test_events_are_submitted_then_cursor_saved_then_acknowledged(webhook_receiver, tmp_path):
    submit = RecordingSubmit()
    mis = FakeMis(events(5), submitted=submit)
    mis.install(webhook_receiver)
    source = MisPollSource(settings(webhook_receiver, tmp_path))
    state_file = tmp_path / "cursor.json"
    await source.start(submit)
    try:
        await submit.wait_for(5)
        await webhook_receiver.wait_for(3, path="/ack")
        # the MIS has the third ack; the source records it once the MIS has answered
        for _ in range(200):
            if json.loads(state_file.read_text()) == {"cursor": "5", "acked": True}:
                break
            await asyncio.sleep(0.01)
    finally:
        await source.stop()
    assert [e.id for e in submit.events] == [f"mis-{i}" for i in range(5)]
    assert mis.seen_since[:3] == [None, "2", "4"]  # full pages are followed at once
    # every ack came after the events up to its cursor were stored, never before
    assert all(int(cursor) <= stored for cursor, stored in mis.acks)
    assert mis.acks[-1][0] == "5"
    assert json.loads(state_file.read_text()) == {"cursor": "5", "acked": True}


async def test_unstored_events_keep_the_cursor_and_are_fetched_again(webhook_receiver, tmp_path):
    submit = RecordingSubmit()
    submit.fail_next(SpoolUnavailable("disk below min_free"))
    mis = FakeMis(events(2), submitted=submit)
    mis.install(webhook_receiver)
    source = MisPollSource(settings(webhook_receiver, tmp_path))
    await run_until(source, submit, 2, webhook_receiver, acks=1)
    assert mis.seen_since[:2] == [None, None]  # the page was asked for again
    assert [cursor for cursor, _ in mis.acks] == ["2"]
    assert [e.id for e in submit.events] == ["mis-0", "mis-1"]


async def test_mis_errors_back_off_and_mark_the_source_not_ready(webhook_receiver, tmp_path):
    submit = RecordingSubmit()
    mis = FakeMis(events(1), failures=3, submitted=submit)
    mis.install(webhook_receiver)
    source = MisPollSource(settings(webhook_receiver, tmp_path))
    await source.start(submit)
    try:
        await webhook_receiver.wait_for(2, path="/changes")
        assert source.ready is False
        await submit.wait_for(1)
        for _ in range(100):
            if source.ready:
                break
            await asyncio.sleep(0.02)
        assert source.ready is True
    finally:
        await source.stop()
    assert mis.seen_since[:4] == [None, None, None, None]


async def test_a_restart_resumes_from_the_saved_cursor(webhook_receiver, tmp_path):
    submit = RecordingSubmit()
    mis = FakeMis(events(3), submitted=submit)
    mis.install(webhook_receiver)
    await run_until(
        MisPollSource(settings(webhook_receiver, tmp_path)), submit, 3, webhook_receiver, 2
    )
    mis.events.extend(events(5)[3:])
    mis.seen_since.clear()
    again = RecordingSubmit()
    mis.submitted = again
    await run_until(MisPollSource(settings(webhook_receiver, tmp_path)), again, 2)
    assert mis.seen_since[0] == "3"
    assert [e.id for e in again.events] == ["mis-3", "mis-4"]


async def test_an_invalid_event_is_skipped_and_the_feed_goes_on(webhook_receiver, tmp_path):
    feed = events(3)
    del feed[1]["customer"]
    submit = RecordingSubmit()
    mis = FakeMis(feed, submitted=submit)
    mis.install(webhook_receiver)
    source = MisPollSource(settings(webhook_receiver, tmp_path, batch=10))
    await run_until(source, submit, 2)
    assert [e.id for e in submit.events] == ["mis-0", "mis-2"]
    assert source.rejected == 1


async def test_through_a_running_daemon(webhook_receiver, postbackd_daemon, tmp_path):
    mis = FakeMis(events(3))
    mis.install(webhook_receiver)
    daemon = postbackd_daemon(
        sources={"mis-poll": settings(webhook_receiver, tmp_path)},
        triggers=[{"delivery": "webhook", "options": {"url": webhook_receiver.url("/hook")}}],
    )
    await daemon.start()
    hooks = await webhook_receiver.wait_for(3, path="/hook")
    assert sorted(json.loads(r.body)["orderId"] for r in hooks) == ["o-0", "o-1", "o-2"]
    await daemon.wait_for_deliveries(3)
    status, ready = await daemon.request("GET", "/readyz")
    assert status == 200 and ready["sources"]["mis-poll"] is True
    assert mis.acks[-1][0] == "3"
