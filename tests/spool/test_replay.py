"""Replay and backfill over both backends: retry and resend by the request log's filters,
dry runs that count, and a backfill that routes stored events again (idempotent)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from postbackd.backfill import BackfillRefused, backfill
from postbackd.events import Event
from postbackd.generation import Generation, load_generation, open_plugins
from postbackd.router import delivery_id
from postbackd.spool import ListFilter, Spool, open_spool
from postbackd.spool.model import DeliveryState
from tests.configs import webhook_config
from tests.pg_fixtures import pg_cluster, pg_url
from tests.spool.helpers import add, make_event, new_delivery, result, soon, state_of
from tests.spool.test_verbs import make_dead

S = DeliveryState

__all__ = ["pg_cluster", "pg_url"]


async def make_done(spool: Spool, delivery_id: str, **options: object) -> None:
    order = options.pop("order", "o1")
    await add(
        spool,
        f"event-{delivery_id}",
        new_delivery(delivery_id, order=order, **options),
        order=order,
    )  # type: ignore[arg-type]
    claimed = await spool.claim_due(soon(), 10)
    assert delivery_id in [c.id for c in claimed]
    await spool.record_attempt(result(delivery_id, S.DONE))


# ---------------------------------------------------------------------- retry by filter


async def test_retry_by_trigger_order_event_type_and_window(spool: Spool) -> None:
    await make_dead(spool, "a", order="o1", trigger="t1")
    await make_dead(spool, "b", order="o2", trigger="t2")
    between = time.time()
    await make_dead(spool, "c", order="o3", trigger="t2")
    assert await spool.verbs.retry(where=ListFilter(trigger="t2"), dry_run=True) == 2
    assert await state_of(spool, "b") is S.DEAD  # a dry run changes nothing
    assert await spool.verbs.retry(where=ListFilter(trigger="t2", since=between)) == 1
    assert await state_of(spool, "c") is S.PENDING
    assert await state_of(spool, "b") is S.DEAD
    assert await spool.verbs.retry(where=ListFilter(until=between, order="o2")) == 1
    assert await state_of(spool, "b") is S.PENDING
    assert await spool.verbs.retry(where=ListFilter(event_type="order.cancelled")) == 0
    assert await spool.verbs.retry(where=ListFilter(state=S.DEAD, event_type="order.shipped")) == 1
    assert await state_of(spool, "a") is S.PENDING


async def test_retry_refuses_a_state_it_cannot_retry_given_as_a_filter(spool: Spool) -> None:
    with pytest.raises(ValueError, match="done deliveries cannot be retried"):
        await spool.verbs.retry(where=ListFilter(state=S.DONE))


async def test_hold_and_release_by_filter_and_dry_run(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("p1", trigger="t1", order="o1"), order="o1")
    await add(spool, "e2", new_delivery("p2", trigger="t2", order="o2"), order="o2")
    assert await spool.verbs.hold(where=ListFilter(trigger="t2"), dry_run=True) == 1
    assert await state_of(spool, "p2") is S.PENDING
    assert await spool.verbs.hold(where=ListFilter(trigger="t2")) == 1
    assert (await state_of(spool, "p1"), await state_of(spool, "p2")) == (S.PENDING, S.HELD)
    assert await spool.verbs.release(where=ListFilter(order="o2"), dry_run=True) == 1
    assert await spool.verbs.release(where=ListFilter(order="o1")) == 0
    assert await spool.verbs.release(where=ListFilter(order="o2")) == 1
    assert await state_of(spool, "p2") is S.PENDING


# ---------------------------------------------------------------------- resend


async def test_resend_sends_a_done_delivery_again_with_the_same_payload(spool: Spool) -> None:
    await make_done(spool, "d1")
    assert await spool.verbs.resend(["d1"], dry_run=True) == 1
    assert await state_of(spool, "d1") is S.DONE
    assert await spool.verbs.resend(["d1"]) == 1
    (claimed,) = await spool.claim_due(soon(), 10)
    assert (claimed.id, claimed.attempts, claimed.body) == ("d1", 0, b'{"status":"shipped"}')
    assert claimed.logged_attempts == 1  # the next attempt is numbered after the first
    detail = await spool.get_delivery("d1")
    assert detail is not None and detail.summary.finished_at is None


async def test_resend_rerender_drops_the_stored_payload(spool: Spool) -> None:
    await make_done(spool, "d1")
    assert await spool.verbs.resend(where=ListFilter(customer="acme"), rerender=True) == 1
    (claimed,) = await spool.claim_due(soon(), 10)
    assert claimed.body is None  # the attempt renders it with the current template


async def test_resend_touches_only_done_deliveries_and_needs_a_selector(spool: Spool) -> None:
    await make_done(spool, "done", order="o1")
    await make_dead(spool, "dead", order="o2")
    await add(spool, "e3", new_delivery("waiting", order="o3"), order="o3")
    assert await spool.verbs.resend(["dead", "waiting"]) == 0
    assert await spool.verbs.resend(where=ListFilter(trigger="t1")) == 1
    assert await state_of(spool, "dead") is S.DEAD
    with pytest.raises(ValueError, match="resend needs delivery ids or a filter"):
        await spool.verbs.resend()
    with pytest.raises(ValueError, match="only done deliveries can be resent"):
        await spool.verbs.resend(where=ListFilter(state=S.DEAD))


# ---------------------------------------------------------------------- backfill: the store


async def test_add_deliveries_for_stored_events_is_idempotent(spool: Spool) -> None:
    before = time.time()
    await spool.submit(make_event("e1", order="o1"), [], source="test")
    await spool.submit(make_event("e2", order="o2", customer="globex"), [], source="test")
    page = await spool.verbs.stored_events("acme", before - 1, None, 0, 10)
    assert [event.id for event in page] == ["e1"]
    assert await spool.verbs.stored_events("acme", before - 1, before - 0.5, 0, 10) == []
    assert await spool.verbs.stored_events("acme", before - 1, None, page[-1].seq, 10) == []
    assert await spool.verbs.missing_ids(["new", "other"]) == ["new", "other"]
    row = ("e1", new_delivery("new", trigger="late"))
    assert await spool.verbs.add_deliveries([row]) == 1
    assert await spool.verbs.add_deliveries([row]) == 0
    assert await spool.verbs.missing_ids(["new", "other"]) == ["other"]
    assert (await spool.stats()).unmatched_events == 1  # e1 is matched now; globex's is not
    (claimed,) = await spool.claim_due(soon(), 10)
    assert (claimed.id, claimed.event_id) == ("new", "e1")


async def test_add_deliveries_supersedes_as_intake_does(spool: Spool) -> None:
    # Backfill stores through intake's insert: a superseding delivery cancels the order's
    # older pending status of the trigger, and only that one.
    await add(spool, "e1", new_delivery("shipped", supersede=True))
    await add(spool, "e2", new_delivery("other-order", order="o2", supersede=True), order="o2")
    await spool.submit(make_event("e3", order="o1"), [], source="test")
    late = new_delivery("delivered", supersede=True)
    assert await spool.verbs.add_deliveries([("e3", late)]) == 1
    assert await state_of(spool, "shipped") is S.CANCELLED
    detail = await spool.get_delivery("shipped")
    assert detail is not None and detail.summary.last_error == "superseded by delivered"
    assert await state_of(spool, "other-order") is S.PENDING
    assert await state_of(spool, "delivered") is S.PENDING
    assert await spool.verbs.add_deliveries([("e3", late)]) == 0  # stored: nothing cancelled
    assert await state_of(spool, "delivered") is S.PENDING


async def test_a_backfill_racing_another_nodes_for_one_delivery_stores_it_once(
    pg_url: str,
) -> None:
    # Another node's backfill has inserted the delivery, not yet committed: this node's
    # look-up misses it, its insert waits for that transaction, then leaves the row as it is
    # (the same delivery, by its id) instead of failing the whole backfill.
    import asyncpg

    from postbackd.spool.postgres import writes

    spool = await open_spool(pg_url, exclusive=True, node="node-a")
    other = await asyncpg.connect(pg_url)
    observer = await asyncpg.connect(pg_url)  # outside any transaction: a fresh view each time
    try:
        await spool.submit(make_event("e1"), [], source="test")
        late = new_delivery("late", trigger="late", order=None)
        other_backfill = other.transaction()
        await other_backfill.start()
        stored = await writes.insert_delivery(other, "e1", late, time.time(), skip_stored=True)
        assert stored == writes.Inserted(stored=True, superseded=0)
        racing = asyncio.ensure_future(spool.verbs.add_deliveries([("e1", late)]))
        for _ in range(200):  # until its insert waits on the other transaction (≤ 10 s)
            waiting = await observer.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO deliveries%'"
            )
            if waiting or racing.done():
                break
            await asyncio.sleep(0.05)
        assert waiting == 1 and not racing.done()
        await other_backfill.commit()
        assert await asyncio.wait_for(racing, 10) == 0  # stored by the other node, not here
        assert await spool.verbs.missing_ids(["late"]) == []
        (claimed,) = await spool.claim_due(soon(), 10)
        assert (claimed.id, claimed.event_id) == ("late", "e1")
    finally:
        await observer.close()
        await other.close()
        await spool.close()


async def test_add_deliveries_refuses_a_state_a_new_delivery_cannot_have(spool: Spool) -> None:
    await spool.submit(make_event("e1"), [], source="test")
    with pytest.raises(ValueError, match="cannot be done"):
        await spool.verbs.add_deliveries([("e1", new_delivery("x", state=S.DONE))])


# ---------------------------------------------------------------------- backfill: routing


LATE_TRIGGER = """
[[trigger]]
name = "acme-late"
customer = "acme"
events = ["order.shipped"]
template = "builtin:order-status-json"
delivery = "webhook"
{status}
[trigger.options]
url = "http://127.0.0.1:9/late"
"""


def generation(tmp_path: Path, status: str = "") -> Generation:
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    files = webhook_config("http://127.0.0.1:9/hook", port=9, spool=tmp_path / "unused.db")
    files["late.toml"] = LATE_TRIGGER.format(status=status)
    for name, text in files.items():
        (conf / name).write_text(text)
    return load_generation(conf, open_plugins(conf, use_entry_points=False), 1)


def shipped(event_id: str, order: str, type_: str = "order.shipped") -> Event:
    return make_event(event_id, order=order, type_=type_)


async def test_backfill_creates_what_the_trigger_matches_now_once(
    spool: Spool, tmp_path: Path
) -> None:
    router = generation(tmp_path).router
    before = time.time() - 1
    for event_id, order, type_ in (
        ("e1", "o1", "order.shipped"),
        ("e2", "o2", "order.cancelled"),  # not a type acme-late matches
        ("e3", "o3", "order.shipped"),
    ):
        await spool.submit(shipped(event_id, order, type_), [], source="test")
    await spool.submit(make_event("g1", customer="globex"), [], source="test")

    dry = await backfill(spool, router, "acme-late", since=before, dry_run=True)
    assert (dry.matched, dry.existing, dry.added, dry.dry_run) == (2, 0, 2, True)
    assert await spool.verbs.missing_ids([delivery_id("e1", "acme-late")]) != []

    done = await backfill(spool, router, "acme-late", since=before)
    assert (done.matched, done.existing, done.added) == (2, 0, 2)
    claimed = await spool.claim_due(soon(), 10)
    assert sorted(c.id for c in claimed) == sorted(
        delivery_id(e, "acme-late") for e in ("e1", "e3")
    )
    assert all(c.body and b'"orderId"' in c.body for c in claimed)  # rendered now

    again = await backfill(spool, router, "acme-late", since=before)
    assert (again.matched, again.existing, again.added) == (2, 2, 0)
    window = await backfill(spool, router, "acme-all", since=before, until=before + 0.5)
    assert window.matched == 0


async def test_backfill_refuses_unknown_inactive_triggers_and_empty_windows(
    spool: Spool, tmp_path: Path
) -> None:
    router = generation(tmp_path, status='status = "inactive"').router
    with pytest.raises(BackfillRefused, match=r"no trigger named 'nope'.*acme-all"):
        await backfill(spool, router, "nope", since=0)
    with pytest.raises(BackfillRefused, match=r"'acme-late' is inactive.*late\.toml:\d+"):
        await backfill(spool, router, "acme-late", since=0)
    with pytest.raises(BackfillRefused, match="the window is empty"):
        await backfill(spool, router, "acme-all", since=10, until=5)
