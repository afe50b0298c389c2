"""Shipment files in the spool (the contract, on both backends): a batching trigger's
deliveries wait in their window, unclaimable one by one; a closed window is sealed into one
stored file with its deliveries bound to it; the file is claimed, retried and finished as one,
and every delivery's request log names it.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from postbackd.batching import window_key
from postbackd.spool import (
    BatchAttempt,
    DeliveryState,
    NewBatch,
    NewDelivery,
    OpenWindow,
    Spool,
    open_spool,
)
from postbackd.spool.postgres import batches as postgres_batches
from postbackd.spool.sqlite import batches as sqlite_batches
from postbackd.spool.sqlite.schema import MIGRATIONS
from tests.spool.helpers import add, count_rows, new_delivery, result, state_of

S = DeliveryState
LEASE = 30.0


def member(delivery_id: str, window: str, end: float, order: str) -> NewDelivery:
    return replace(
        new_delivery(delivery_id, trigger="ship", order=order, body=f"{order},shipped".encode()),
        batch_window=window,
        next_attempt_at=end,
    )


def sealed(window: OpenWindow, *, part: int | None = None) -> NewBatch:
    number = part or window.files + 1
    return NewBatch(
        id=f"{window.key}#{number}",
        window=window.key,
        part=number,
        trigger=window.trigger,
        plugin=window.plugin,
        customer=window.customer,
        file_name=f"acme-{number}.csv",
        format=window.format,
        content_type=window.content_type,
        body=b"orderId,status\n" + b"".join(row.body + b"\n" for row in window.rows),
        delivery_ids=tuple(row.delivery_id for row in window.rows),
        next_attempt_at=time.time(),
    )


def attempt(batch_id: str, state: DeliveryState, **kwargs: object) -> BatchAttempt:
    values: dict[str, object] = {
        "batch_id": batch_id,
        "started_at": time.time(),
        "duration": 0.1,
        "outcome": "ok" if state is S.DONE else "retry",
        "new_state": state,
        "next_attempt_at": None,
        "status": None,
        "error": None if state is S.DONE else "connection refused",
        "request": {"method": "PUT", "file": "acme-1.csv"},
        "response": None,
        **kwargs,
    }
    return BatchAttempt(**values)  # type: ignore[arg-type]


async def fill_window(spool: Spool, end: float, count: int = 3) -> str:
    key = window_key("ship", end)
    for n in range(count):
        await add(spool, f"e{n}", member(f"d{n}", key, end, f"o{n}"), order=f"o{n}")
    return key


async def test_window_members_wait_and_are_never_claimed_alone(spool: Spool) -> None:
    later = time.time() + 3600
    await fill_window(spool, later)
    await add(spool, "plain", new_delivery("plain"))
    assert [d.id for d in await spool.claim_due(time.time() + 7200, 10)] == ["plain"]
    assert await spool.next_due_at() is None
    assert await spool.closed_windows(time.time()) == []
    assert await spool.next_batch_due() == pytest.approx(later)
    assert await state_of(spool, "d0") is S.PENDING


async def test_a_closed_window_is_sealed_into_one_file_with_its_rows(spool: Spool) -> None:
    end = time.time() - 1
    key = await fill_window(spool, end)
    (window,) = await spool.closed_windows(time.time())
    assert window.key == key and window.trigger == "ship" and window.files == 0
    assert [row.delivery_id for row in window.rows] == ["d0", "d1", "d2"]
    assert [row.body for row in window.rows] == [b"o0,shipped", b"o1,shipped", b"o2,shipped"]
    batch = sealed(window)
    assert await spool.seal_batch(batch)
    assert not await spool.seal_batch(batch)  # another node (or a retry) stores it once
    assert await spool.closed_windows(time.time()) == []
    (claimed,) = await spool.claim_batches(time.time(), 4, LEASE)
    assert (claimed.file_name, claimed.body, claimed.rows) == (batch.file_name, batch.body, 3)
    assert await spool.claim_batches(time.time(), 4, LEASE) == []  # leased
    assert {await state_of(spool, f"d{n}") for n in range(3)} == {S.PENDING}


async def test_a_file_is_retried_as_one_and_each_delivery_logs_it(spool: Spool) -> None:
    end = time.time() - 1
    await fill_window(spool, end, count=2)
    (window,) = await spool.closed_windows(time.time())
    batch = sealed(window)
    await spool.seal_batch(batch)
    await spool.claim_batches(time.time(), 4, LEASE)
    retry_at = time.time() + 0.5
    assert await spool.record_batch_attempt(attempt(batch.id, S.PENDING, next_attempt_at=retry_at))
    assert await spool.claim_batches(time.time(), 4, LEASE) == []  # not due yet
    for n in range(2):
        detail = await spool.get_delivery(f"d{n}")
        assert detail is not None and detail.summary.state is S.PENDING
        assert detail.summary.attempts == 1
        (logged,) = detail.attempts
        assert logged.outcome == "retry" and logged.error == "connection refused"
        assert logged.request is not None and logged.request["file"] == "acme-1.csv"
    (again,) = await spool.claim_batches(retry_at + 0.1, 4, LEASE)
    assert again.attempts == 1 and again.body == batch.body  # the same bytes, the same name
    assert await spool.record_batch_attempt(attempt(batch.id, S.DONE))
    for n in range(2):
        detail = await spool.get_delivery(f"d{n}")
        assert detail is not None and detail.summary.state is S.DONE
        assert [a.number for a in detail.attempts] == [1, 2]
    assert await spool.claim_batches(time.time() + 3600, 4, LEASE) == []


async def test_a_dead_or_cancelled_file_ends_its_deliveries(spool: Spool) -> None:
    end = time.time() - 1
    await fill_window(spool, end, count=2)
    (window,) = await spool.closed_windows(time.time())
    batch = sealed(window)
    await spool.seal_batch(batch)
    cancelled = attempt(batch.id, S.CANCELLED, error="trigger removed", counted=False)
    assert await spool.record_batch_attempt(cancelled)
    for n in range(2):
        detail = await spool.get_delivery(f"d{n}")
        assert detail is not None and detail.summary.state is S.CANCELLED
        assert detail.attempts == []  # nothing was sent, nothing is logged as an attempt
    assert not await spool.record_batch_attempt(attempt("no-such-file#1", S.DONE))


async def test_a_delivery_that_changed_keeps_the_file_from_being_stored(spool: Spool) -> None:
    end = time.time() - 1
    await fill_window(spool, end, count=2)
    (window,) = await spool.closed_windows(time.time())
    await spool.record_attempt(
        result("d1", S.CANCELLED, outcome="fail", error="trigger removed", counted=False)
    )  # between reading the window and storing its file
    assert not await spool.seal_batch(sealed(window))
    assert await count_rows(spool, "batches") == 0
    (again,) = await spool.closed_windows(time.time())  # still waiting, nothing bound
    assert [row.delivery_id for row in again.rows] == ["d0"]
    assert await spool.seal_batch(sealed(again))


async def test_a_late_delivery_of_a_closed_window_goes_into_one_more_file(spool: Spool) -> None:
    end = time.time() - 1
    key = await fill_window(spool, end, count=1)
    (window,) = await spool.closed_windows(time.time())
    await spool.seal_batch(sealed(window))
    await add(spool, "late", member("late", key, end, "o9"), order="o9")
    (late,) = await spool.closed_windows(time.time())
    assert late.files == 1 and [row.delivery_id for row in late.rows] == ["late"]
    assert await spool.seal_batch(sealed(late))
    assert len(await spool.claim_batches(time.time(), 4, LEASE)) == 2


@pytest.mark.sqlite_only
async def test_a_version_1_spool_is_migrated_and_keeps_its_deliveries(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO deliveries (id, event_id, trigger_name, plugin, customer, event_type, "
        "format, content_type, body, state, ordered, created_at, next_attempt_at, updated_at) "
        "VALUES ('old', 'e', 't', 'webhook', 'acme', 'order.shipped', 'json', "
        "'application/json', X'7B7D', 'pending', 0, 0, 0, 0)"
    )
    conn.close()
    async with await open_spool(path) as spool:
        assert [d.id for d in await spool.claim_due(time.time(), 10)] == ["old"]
        assert await spool.closed_windows(time.time()) == []


async def test_a_retried_delivery_of_a_dead_file_goes_out_in_one_more_file(spool: Spool) -> None:
    end = time.time() - 1
    await fill_window(spool, end, count=2)
    (window,) = await spool.closed_windows(time.time())
    batch = sealed(window)
    await spool.seal_batch(batch)
    await spool.record_batch_attempt(attempt(batch.id, S.DEAD, outcome="fail"))
    assert await state_of(spool, "d0") is S.DEAD
    assert await spool.verbs.retry(["d0"]) == 1
    (again,) = await spool.closed_windows(time.time())
    assert again.files == 1 and [row.delivery_id for row in again.rows] == ["d0"]
    assert await spool.seal_batch(sealed(again))
    (claimed,) = await spool.claim_batches(time.time(), 4, LEASE)
    assert claimed.id == f"{window.key}#2" and claimed.rows == 1


async def test_rows_waiting_in_their_window_are_not_a_backlog(spool: Spool) -> None:
    later = time.time() + 86400
    await fill_window(spool, later)
    assert (await spool.stats()).oldest_pending_age is None  # a daily window not ended yet
    end = time.time() - 30
    await add(spool, "late-1", member("late-1", window_key("ship", end), end, "o8"), order="o8")
    age = (await spool.stats()).oldest_pending_age
    assert age is not None and 29 < age < 60  # late since its window ended, 30 s ago


async def test_a_resent_row_goes_out_in_one_more_file_rendered_again(spool: Spool) -> None:
    end = time.time() - 1
    await fill_window(spool, end, count=2)
    (window,) = await spool.closed_windows(time.time())
    batch = sealed(window)
    await spool.seal_batch(batch)
    await spool.claim_batches(time.time(), 4, LEASE)
    await spool.record_batch_attempt(attempt(batch.id, S.DONE))
    assert await spool.verbs.resend(["d1"], rerender=True) == 1
    (again,) = await spool.closed_windows(time.time())
    assert again.files == 1
    assert [(row.delivery_id, row.body) for row in again.rows] == [("d1", None)]


async def test_a_window_over_the_row_limit_goes_out_in_several_files(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_batches, "MAX_FILE_ROWS", 2)
    monkeypatch.setattr(postgres_batches, "MAX_FILE_ROWS", 2)
    end = time.time() - 1
    await fill_window(spool, end, count=3)
    (first,) = await spool.closed_windows(time.time())
    assert [row.delivery_id for row in first.rows] == ["d0", "d1"]
    assert await spool.seal_batch(sealed(first))
    (rest,) = await spool.closed_windows(time.time())
    assert rest.files == 1 and [row.delivery_id for row in rest.rows] == ["d2"]
