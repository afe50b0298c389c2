"""`postbackd spool copy`: a SQLite spool into PostgreSQL and back, history and schedules kept,
a non-empty target refused. Real files, the real PostgreSQL of scripts/postgres.sh, the real
command line in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import postbackd.spool.copy as copy_module
from postbackd.spool import Spool, open_spool
from postbackd.spool.copy import CopyCounts, copy_spool
from postbackd.spool.model import DeliveryState, TimerStart
from tests.pg_fixtures import pg_cluster, pg_url
from tests.spool.helpers import add, make_event, new_delivery, result, soon

S = DeliveryState
__all__ = ["pg_cluster", "pg_url"]


def spool_copy(source: Path | str, target: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postbackd", "spool", "copy", str(source), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def fill(spool: Spool) -> float:
    """A done delivery with its request log, one due later, one held, one unmatched event."""
    later = time.time() + 3600
    await add(spool, "e1", new_delivery("done", order="o1"), order="o1")
    (claimed,) = await spool.claim_due(soon(), 1)
    await spool.record_attempt(result(claimed.id, S.DONE, request={"url": "https://x"}))
    await add(spool, "e2", new_delivery("later", order="o2", next_attempt_at=later), order="o2")
    await add(spool, "e3", new_delivery("held", order="o3", ordered=True), order="o3")
    await spool.verbs.hold(["held"])
    await add(spool, "unmatched")
    received = make_event("e4", order="o4", type_="order.received")
    timer = TimerStart("e4", "alert-o4", "ship", "acme", "o4", "order.delayed", ("x.y",), 60.0)
    await spool.submit_many([(received, [])], source="test", timers=[timer])
    return later


async def snapshot(target: Path | str) -> dict[str, tuple[object, ...]]:
    async with await open_spool(target) as spool:
        page, _ = await spool.list_deliveries(limit=100)
        out: dict[str, tuple[object, ...]] = {}
        for summary in page:
            detail = await spool.get_delivery(summary.id)
            assert detail is not None
            out[summary.id] = (
                summary.state,
                summary.next_attempt_at,
                summary.attempts,
                summary.held_reason,
                detail.body,
                detail.event,
                [(a.number, a.status, a.request) for a in detail.attempts],
            )
        stats = await spool.stats()
        out["stats"] = (stats.events, stats.unmatched_events, dict(stats.by_state))
        out["timers"] = tuple(await spool.list_timers(None))
        return out


async def test_sqlite_into_postgresql_and_back(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "spool.db"
    async with await open_spool(source) as spool:
        later = await fill(spool)
    original = await snapshot(source)
    assert original["later"][1] == later
    assert [t.order_id for t in original["timers"]] == ["o4"]  # type: ignore[attr-defined]

    done = spool_copy(source, pg_url)
    assert done.returncode == 0, done.stderr
    assert "copied 5 events, 3 deliveries and 1 request log entries" in done.stdout
    assert await snapshot(pg_url) == original

    back = tmp_path / "back.db"
    done = spool_copy(pg_url, back)
    assert done.returncode == 0, done.stderr
    assert await snapshot(back) == original


async def test_a_non_empty_target_and_a_missing_source_are_refused(
    tmp_path: Path, pg_url: str
) -> None:
    source = tmp_path / "spool.db"
    async with await open_spool(source) as spool:
        await fill(spool)
    assert spool_copy(source, pg_url).returncode == 0
    again = spool_copy(source, pg_url)
    assert again.returncode == 1
    assert "already holds 5 events and 3 deliveries: copy into an empty spool" in again.stderr
    missing = spool_copy(tmp_path / "nope.db", tmp_path / "new.db")
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert not (tmp_path / "new.db").exists()


async def test_a_running_daemons_spool_file_is_not_copied(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "spool.db"
    async with await open_spool(source, exclusive=True) as spool:  # as its daemon holds it
        await fill(spool)
        refused = spool_copy(source, pg_url)
    assert refused.returncode == 1, refused.stdout
    async with await open_spool(pg_url) as target:
        assert (await target.stats()).events == 0


async def fill_many(spool: Spool, count: int) -> None:
    """`count` events with a delivery each, every other one attempted (a request log entry)."""
    for index in range(count):
        await add(
            spool, f"e{index}", new_delivery(f"d{index}", order=f"o{index}"), order=f"o{index}"
        )
    for claimed in await spool.claim_due(soon(), count):
        if int(claimed.id[1:]) % 2 == 0:
            await spool.record_attempt(result(claimed.id, S.DONE, request={"n": claimed.id}))
    await spool.release_inflight([f"d{i}" for i in range(1, count, 2)], time.time())
    # five timers started in one transaction: the same started_at, so the copy's keyset
    # (started_at, id) must page through ties
    received = [make_event(f"r{i}", order=f"t{i}", type_="order.received") for i in range(5)]
    timers = [
        TimerStart(f"r{i}", f"alert-t{i}", "ship", "acme", f"t{i}", "order.delayed", ("x",), 60.0)
        for i in range(5)
    ]
    await spool.submit_many([(event, []) for event in received], source="test", timers=timers)


async def test_more_rows_than_a_batch_are_streamed_across_batches(
    tmp_path: Path, pg_url: str
) -> None:
    source = tmp_path / "spool.db"
    async with await open_spool(source) as spool:
        await fill_many(spool, 25)
    original = await snapshot(source)
    # 30 events, 25 deliveries, 13 attempts, 5 timers: batches of 4 (the last one short)
    counts = await copy_spool(source, pg_url, batch_rows=4)
    assert counts == CopyCounts(events=30, deliveries=25, attempts=13)
    assert len(original["timers"]) == 5
    assert await snapshot(pg_url) == original
    back = tmp_path / "back.db"  # batches that end exactly at a table's end: 6 of 5 events
    assert await copy_spool(pg_url, back, batch_rows=5) == counts
    assert await snapshot(back) == original


async def test_a_copy_that_fails_midway_leaves_the_target_empty(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "spool.db"
    async with await open_spool(source) as spool:
        await fill_many(spool, 12)
    batches = 0
    normalised = copy_module._normalised

    def failing(table: str, columns: str, rows: list[tuple[object, ...]]) -> Any:
        nonlocal batches
        batches += 1
        if batches == 4:  # part of the way: some batches written, more to come
            raise RuntimeError("the source went away")
        return normalised(table, columns, rows)

    monkeypatch.setattr(copy_module, "_normalised", failing)
    for target in (pg_url, tmp_path / "target.db"):
        batches = 0
        with pytest.raises(RuntimeError, match="went away"):
            await copy_spool(source, target, batch_rows=5)
        async with await open_spool(target) as copied:
            stats = await copied.stats()
            assert (stats.events, stats.deliveries) == (0, 0)
