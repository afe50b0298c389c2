"""The spool's operator verbs and queries: retry, hold, release, purge, sync_triggers, listing,
stats, prune and erase."""

from __future__ import annotations

import time
from typing import Any

import pytest

from postbackd.spool import ListFilter, Spool
from postbackd.spool.model import TRIGGER_INACTIVE, DeliveryState, ErasedCounts, TriggerSync
from tests.spool.helpers import add, count_rows, new_delivery, result, soon, state_of

S = DeliveryState


async def make_dead(spool: Spool, delivery_id: str, **options: object) -> None:
    await add(spool, f"event-{delivery_id}", new_delivery(delivery_id, **options))  # type: ignore[arg-type]
    (claimed,) = await spool.claim_due(soon(), 1, exclude_destinations=["excluded"])
    assert claimed.id == delivery_id
    await spool.record_attempt(
        result(delivery_id, S.PENDING, outcome="retry", status=500, next_at=time.time() - 1)
    )
    await spool.claim_due(soon(), 1)
    await spool.record_attempt(
        result(delivery_id, S.DEAD, outcome="retry", number=2, status=500, error="gave up")
    )


# ---------------------------------------------------------------------- retry/hold/release


async def test_retry_dead_starts_a_fresh_schedule(spool: Spool) -> None:
    await make_dead(spool, "d1")
    detail = await spool.get_delivery("d1")
    assert detail is not None and detail.summary.attempts == 2
    assert await spool.verbs.retry(["d1"]) == 1
    (claimed,) = await spool.claim_due(soon(), 10)
    assert (claimed.id, claimed.attempts) == ("d1", 0)
    detail = await spool.get_delivery("d1")
    assert detail is not None
    assert detail.summary.finished_at is None
    assert len(detail.attempts) == 2  # the request log keeps what happened


async def test_retry_never_touches_inflight_or_done(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("flying", order="o1"), order="o1")
    await add(spool, "e2", new_delivery("finished", order="o2"), order="o2")
    claimed = await spool.claim_due(soon(), 10)
    assert len(claimed) == 2
    await spool.record_attempt(result("finished", S.DONE))
    assert await spool.verbs.retry(["flying", "finished"]) == 0
    assert await spool.verbs.retry() == 0
    with pytest.raises(ValueError, match="done deliveries cannot be retried"):
        await spool.verbs.retry(state="done")
    with pytest.raises(ValueError, match="unknown delivery state 'bogus'"):
        await spool.verbs.retry(state="bogus")


async def test_retry_pending_now_keeps_attempts(spool: Spool) -> None:
    later = time.time() + 3600
    await add(spool, "e1", new_delivery("d1", next_attempt_at=later))
    assert await spool.claim_due(soon(), 10) == []
    assert await spool.verbs.retry() == 1
    (claimed,) = await spool.claim_due(soon(), 10)
    assert claimed.id == "d1"


async def test_retry_by_destination_customer_and_state(spool: Spool) -> None:
    await make_dead(spool, "a", order="o1")
    await make_dead(spool, "b", order="o2", customer="globex")
    await add(spool, "e-held", new_delivery("held", order="o3"), order="o3")
    await spool.verbs.hold(["held"])
    assert await spool.verbs.retry(destination="https://elsewhere:443") == 0
    assert await spool.verbs.retry(customer="globex") == 1
    assert await state_of(spool, "b") is S.PENDING
    assert await spool.verbs.retry() == 2  # pending b again and dead a; held stays held
    assert await state_of(spool, "held") is S.HELD
    assert await spool.verbs.retry(state="held") == 1
    assert await state_of(spool, "held") is S.PENDING


async def test_retry_with_default_selection_skips_cancelled(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("old", supersede=True))
    await add(spool, "e2", new_delivery("new", supersede=True))
    assert await state_of(spool, "old") is S.CANCELLED
    await spool.claim_due(soon(), 10)
    assert await spool.verbs.retry() == 0
    assert await spool.verbs.retry(["old"]) == 1


async def test_hold_and_release(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("a", order="o1"), order="o1")
    await add(
        spool, "e2", new_delivery("b", order="o2", customer="globex"), order="o2", customer="globex"
    )
    assert await spool.verbs.hold(customer="globex", reason="customer asked to pause") == 1
    detail = await spool.get_delivery("b")
    assert detail is not None
    assert detail.summary.held_reason == "customer asked to pause"
    assert [d.id for d in await spool.claim_due(soon(), 10)] == ["a"]
    assert await spool.verbs.hold(["a"]) == 0  # inflight: not held
    assert await spool.verbs.release(customer="acme") == 0
    assert await spool.verbs.release() == 1
    assert [d.id for d in await spool.claim_due(soon(), 10)] == ["b"]


# ---------------------------------------------------------------------- purge, sync


async def test_purge_deletes_deliveries_and_attempts(spool: Spool) -> None:
    await make_dead(spool, "a", order="o1")
    await add(spool, "e2", new_delivery("b", order="o2"), order="o2")
    with pytest.raises(ValueError, match="purge needs"):
        await spool.verbs.purge()
    assert await spool.verbs.purge(state="dead") == 1
    assert await spool.get_delivery("a") is None
    assert await count_rows(spool, "attempts") == 0
    assert await state_of(spool, "b") is S.PENDING
    assert await spool.verbs.purge(["b", "missing"]) == 1
    assert (await spool.stats()).deliveries == 0


async def test_sync_triggers_holds_resumes_and_cancels(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("on", trigger="active", order="o1"), order="o1")
    await add(spool, "e2", new_delivery("off", trigger="paused", order="o2"), order="o2")
    await add(spool, "e3", new_delivery("gone", trigger="removed", order="o3"), order="o3")
    await add(spool, "e4", new_delivery("op-held", trigger="paused", order="o4"), order="o4")
    await spool.verbs.hold(["op-held"])

    sync = await spool.sync_triggers(active={"active"}, inactive={"paused"})
    assert sync == TriggerSync(held=1, resumed=0, cancelled=1)
    off = await spool.get_delivery("off")
    assert off is not None
    assert (off.summary.state, off.summary.held_reason) == (S.HELD, TRIGGER_INACTIVE)
    gone = await spool.get_delivery("gone")
    assert gone is not None
    assert gone.summary.state is S.CANCELLED
    assert gone.summary.last_error == "trigger removed was removed from the configuration"

    sync = await spool.sync_triggers(active={"active", "paused"}, inactive=())
    assert sync == TriggerSync(held=0, resumed=1, cancelled=0)
    assert await state_of(spool, "off") is S.PENDING
    assert await state_of(spool, "op-held") is S.HELD  # an operator's hold stays


# ---------------------------------------------------------------------- listing and stats


async def test_list_is_newest_first_with_keyset_pagination(spool: Spool) -> None:
    for index in range(7):
        await add(
            spool, f"e{index}", new_delivery(f"d{index}", order=f"o{index}"), order=f"o{index}"
        )
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        rows, cursor = await spool.list_deliveries(limit=3, cursor=cursor)
        pages.append([row.id for row in rows])
        if cursor is None:
            break
    assert pages == [["d6", "d5", "d4"], ["d3", "d2", "d1"], ["d0"]]
    rows, cursor = await spool.list_deliveries(limit=7)
    assert len(rows) == 7 and cursor is None
    with pytest.raises(ValueError, match="invalid cursor"):
        await spool.list_deliveries(cursor="not-a-cursor")


async def test_list_filters(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("a", order="o1", trigger="t1"), order="o1")
    await add(
        spool,
        "e2",
        new_delivery(
            "b", order="o2", trigger="t2", event_type="order.delivered", customer="globex"
        ),
        order="o2",
        customer="globex",
    )
    middle = time.time()
    await add(spool, "e3", new_delivery("c", order="o1", trigger="t2"), order="o1")
    await spool.claim_due(soon(), 1)  # a is inflight
    await spool.release_inflight(["a"], time.time())
    (claimed,) = await spool.claim_due(soon(), 1)
    await spool.record_attempt(result(claimed.id, S.DONE, destination="https://x:443"))

    async def ids(**filters: Any) -> list[str]:
        rows, _ = await spool.list_deliveries(ListFilter(**filters))
        return [row.id for row in rows]

    assert await ids(customer="globex") == ["b"]
    assert await ids(trigger="t2") == ["c", "b"]
    assert await ids(order="o1") == ["c", "a"]
    assert await ids(event_type="order.delivered") == ["b"]
    assert await ids(state=S.DONE) == [claimed.id]
    assert await ids(destination="https://x:443") == [claimed.id]
    assert await ids(since=middle) == ["c"]
    assert await ids(until=middle) == ["b", "a"]
    assert await ids(order="o1", trigger="t1") == ["a"]
    rows, _ = await spool.list_deliveries(ListFilter(state=S.PENDING), limit=1)
    assert rows[0].next_attempt_at is not None
    assert rows[0].to_dict()["state"] == "pending"


async def test_stats(spool: Spool) -> None:
    await add(spool, "e0")
    await add(spool, "e1", new_delivery("a", order="o1"), order="o1")
    await add(spool, "e2", new_delivery("b", order="o2"), order="o2")
    await add(spool, "e3", new_delivery("c", order="o3", state=S.HELD), order="o3")
    await spool.claim_due(soon(), 1)
    stats = await spool.stats()
    assert stats.by_state == {
        "pending": 1,
        "inflight": 1,
        "done": 0,
        "dead": 0,
        "failed": 0,
        "cancelled": 0,
        "held": 1,
    }
    assert (stats.events, stats.unmatched_events, stats.deliveries) == (4, 1, 3)
    assert stats.oldest_pending_age is not None and 0 <= stats.oldest_pending_age < 60
    assert stats.to_dict()["deliveries"] == 3


# ---------------------------------------------------------------------- retention, erasure


async def test_prune_removes_finished_deliveries_and_their_events_in_batches(spool: Spool) -> None:
    await add(spool, "unmatched")
    for index in range(3):
        await add(
            spool, f"e{index}", new_delivery(f"done{index}", order=f"o{index}"), order=f"o{index}"
        )
    await add(
        spool,
        "e-wait",
        new_delivery("waiting", order="o9", next_attempt_at=time.time() + 3600),
        order="o9",
    )
    for claimed in await spool.claim_due(soon(), 10):
        await spool.record_attempt(result(claimed.id, S.DONE))
    cutoff = time.time() + 1
    assert await spool.verbs.prune(time.time() - 3600) == 0  # nothing is that old
    removed = [await spool.verbs.prune(cutoff, batch=2) for _ in range(4)]
    assert removed[-1] == 0
    assert sum(removed) == 3 + 4  # three deliveries, their three events, the unmatched one
    stats = await spool.stats()
    assert (stats.deliveries, stats.events) == (1, 1)
    assert await state_of(spool, "waiting") is S.PENDING
    assert await count_rows(spool, "attempts") == 0


async def test_erase_order_removes_its_personal_data(spool: Spool) -> None:
    await make_dead(spool, "a", order="o1")
    await add(spool, "e2", new_delivery("b", order="o1", trigger="t2"), order="o1")
    await add(spool, "e3", new_delivery("c", order="o2"), order="o2")
    erased = await spool.verbs.erase_order("o1")
    assert erased == ErasedCounts(events=2, deliveries=2, attempts=2)
    assert await spool.get_delivery("a") is None
    assert await state_of(spool, "c") is S.PENDING
    rows, _ = await spool.list_deliveries(ListFilter(order="o1"))
    assert rows == []
    assert await spool.verbs.erase_order("o1") == ErasedCounts(0, 0, 0)


@pytest.mark.sqlite_only  # the files of a SQLite spool; PostgreSQL erases inside the database
async def test_erase_order_leaves_no_copy_in_any_spool_file_while_open(spool: Spool) -> None:
    """Rows updated several times (claimed, retried, dead) and then erased: the raw bytes of
    the database, its write-ahead log and its shared memory hold no trace of the order, with
    the spool still open (as the daemon keeps it)."""
    order = "ORD-UNIT-93C1AE"
    await make_dead(spool, "a", order=order)
    await add(spool, "e2", new_delivery("b", order=order, trigger="t2"), order=order)
    await add(spool, "e3", new_delivery("c", order="ORD-KEEP-1"), order="ORD-KEEP-1")
    files = [spool.path.with_name(spool.path.name + suffix) for suffix in ("", "-wal", "-shm")]
    assert sum(path.read_bytes().count(order.encode()) for path in files) > 0
    await spool.verbs.erase_order(order)
    copies = {p.name: p.read_bytes().count(order.encode()) for p in files if p.exists()}
    assert set(copies.values()) == {0}, copies
    assert await state_of(spool, "c") is S.PENDING
