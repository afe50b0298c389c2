"""``[[sla]]`` timers in the spool, on both backends (the `spool` fixture): started and
cancelled in intake's transaction, claimed once, finished, listed, pruned, erased, migrated.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest

from postbackd.spool import Spool, TimerCancel, TimerChange, TimerStart, open_spool
from postbackd.spool.postgres import schema as pg_schema
from postbackd.spool.sqlite import schema as sqlite_schema
from tests.pg_fixtures import pg_url
from tests.spool.helpers import make_event, new_delivery

__all__ = ["pg_url"]


def start(
    event_id: str, order: str = "o1", *, rule: str = "r1", within: float = 60.0
) -> TimerStart:
    return TimerStart(
        event_id=event_id,
        id=f"alert-{rule}-{order}",
        rule=rule,
        customer="acme",
        order_id=order,
        emit="order.delayed",
        expect=("order.shipped",),
        within=within,
    )


def cancel(event_id: str, order: str = "o1", rules: tuple[str, ...] = ("r1",)) -> TimerCancel:
    return TimerCancel(event_id, "order.shipped", "acme", order, rules)


async def submit(
    spool: Spool, event_id: str, changes: list[TimerChange], *, type_: str, order: str = "o1"
) -> bool:
    event = make_event(event_id, order=order, type_=type_)
    (outcome,) = await spool.submit_many([(event, [])], source="test", timers=changes)
    return not outcome.duplicate


async def test_a_timer_starts_with_its_event_and_is_listed_by_due_time(spool: Spool) -> None:
    before = time.time()
    await submit(spool, "e1", [start("e1", "o1", within=60)], type_="order.received")
    await submit(spool, "e2", [start("e2", "o2", within=30)], type_="order.received")
    pending = await spool.list_timers()
    assert [t.order_id for t in pending] == ["o2", "o1"]
    first = pending[1]
    assert first.id == "alert-r1-o1" and first.rule == "r1" and first.state == "pending"
    assert first.started_by == "e1" and first.emit == "order.delayed"
    assert before <= first.started_at <= time.time()
    assert first.due_at == pytest.approx(first.started_at + 60)
    due = await spool.next_timer_due()
    assert due == pytest.approx(pending[0].due_at)
    assert (await spool.stats()).timers_pending == 2


async def test_a_rule_watches_an_order_once(spool: Spool) -> None:
    await submit(spool, "e1", [start("e1")], type_="order.received")
    first = (await spool.list_timers())[0]
    # the same event again is a duplicate; another starting event of the order changes nothing
    assert not await submit(spool, "e1", [start("e1", within=1)], type_="order.received")
    await submit(spool, "e2", [start("e2", within=1)], type_="order.received")
    assert await spool.list_timers() == [first]


async def test_an_expected_event_cancels_in_its_own_transaction(spool: Spool) -> None:
    await submit(spool, "e1", [start("e1", "o1"), start("e1", "o2")], type_="order.received")
    await submit(spool, "e2", [cancel("e2", "o1")], type_="order.shipped")
    (pending,) = await spool.list_timers()
    assert pending.order_id == "o2"
    (cancelled,) = await spool.list_timers("cancelled")
    assert cancelled.order_id == "o1" and cancelled.finished_at is not None
    assert cancelled.note == "cancelled by order.shipped event e2"
    # a rule that the event does not end keeps its timer
    await submit(spool, "e3", [cancel("e3", "o2", rules=("other",))], type_="order.shipped")
    assert [t.order_id for t in await spool.list_timers()] == ["o2"]


async def test_no_timer_when_the_expected_event_came_first(spool: Spool) -> None:
    await submit(spool, "s1", [], type_="order.shipped")
    await submit(spool, "r1", [start("r1")], type_="order.received")
    assert await spool.list_timers(None) == []


async def test_a_batch_is_applied_in_order_and_a_failed_batch_starts_nothing(
    spool: Spool,
) -> None:
    received = make_event("b1", type_="order.received")
    shipped = make_event("b2", type_="order.shipped")
    await spool.submit_many(
        [(received, []), (shipped, [])],
        source="test",
        timers=[start("b1"), cancel("b2")],
    )
    assert await spool.list_timers() == []
    # a delivery id already stored fails the whole batch: its timer must not start either
    await spool.submit(make_event("d1"), [new_delivery("dup")], source="test")
    with pytest.raises(Exception):  # noqa: B017 - each backend's integrity error
        await spool.submit_many(
            [(make_event("d2", order="o9", type_="order.received"), [new_delivery("dup")])],
            source="test",
            timers=[start("d2", "o9")],
        )
    assert all(t.order_id != "o9" for t in await spool.list_timers(None))


async def test_due_timers_are_claimed_once_then_finished(spool: Spool) -> None:
    await submit(spool, "e1", [start("e1", within=0.0)], type_="order.received")
    await submit(spool, "e2", [start("e2", "o2", within=3600)], type_="order.received")
    now = time.time() + 0.01
    (claimed,) = await spool.claim_due_timers(now, 30.0, 10)
    assert claimed.order_id == "o1"
    assert await spool.claim_due_timers(now, 30.0, 10) == []  # claimed: not again
    later = await spool.next_timer_due()
    assert later is not None and later > now + 20  # the claim's end, not a due time to spin on
    assert await spool.finish_timer(claimed.id, "fired", "fired as order.delayed event x")
    assert not await spool.finish_timer(claimed.id, "fired", "again")
    (fired,) = await spool.list_timers("fired")
    assert fired.note == "fired as order.delayed event x"
    assert (await spool.stats()).timers_pending == 1
    assert [t.order_id for t in await spool.list_timers()] == ["o2"]


async def test_a_claim_that_runs_out_is_taken_again(spool: Spool) -> None:
    await submit(spool, "e1", [start("e1", within=0.0)], type_="order.received")
    (first,) = await spool.claim_due_timers(time.time(), 0.2, 10)
    await asyncio.sleep(0.4)
    (again,) = await spool.claim_due_timers(time.time(), 30.0, 10)
    assert again.id == first.id


async def test_an_alert_is_stored_once_however_often_its_timer_fires(spool: Spool) -> None:
    await submit(spool, "e1", [start("e1", within=0.0)], type_="order.received")
    (timer,) = await spool.claim_due_timers(time.time(), 30.0, 10)
    alert = make_event(timer.id, type_="order.delayed")
    (first,) = await spool.submit_many([(alert, [new_delivery("a1")])], source="sla")
    (second,) = await spool.submit_many([(alert, [new_delivery("a1")])], source="sla")
    assert not first.duplicate and second.duplicate


async def test_finished_timers_go_with_retention_and_with_their_order(spool: Spool) -> None:
    await submit(spool, "e1", [start("e1", "o1")], type_="order.received")
    await submit(spool, "e2", [start("e2", "o2")], type_="order.received")
    await submit(spool, "e3", [cancel("e3", "o1")], type_="order.shipped")
    await spool.verbs.prune(time.time() + 1, 500)
    assert [t.order_id for t in await spool.list_timers(None)] == ["o2"]
    await spool.verbs.erase_order("o2")
    assert await spool.list_timers(None) == []


@pytest.mark.sqlite_only
async def test_sqlite_claims_are_cleared_when_the_owner_opens_again(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    async with await open_spool(path) as spool:
        await submit(spool, "e1", [start("e1", within=0.0)], type_="order.received")
        assert await spool.claim_due_timers(time.time(), 3600, 10)
    async with await open_spool(path, exclusive=True) as spool:
        assert len(await spool.claim_due_timers(time.time(), 3600, 10)) == 1


async def test_a_version_1_sqlite_spool_gains_the_timers_table(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        for statement in sqlite_schema.MIGRATIONS[1]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
    async with await open_spool(path) as spool:
        await submit(spool, "e1", [start("e1")], type_="order.received")
        assert len(await spool.list_timers()) == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2


async def test_a_version_1_postgres_spool_gains_the_timers_table(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("CREATE TABLE postbackd_schema (version integer NOT NULL)")
        for statement in pg_schema.MIGRATIONS[1]:
            await conn.execute(statement)
        await conn.execute("INSERT INTO postbackd_schema (version) VALUES (1)")
    finally:
        await conn.close()
    async with await open_spool(pg_url) as spool:
        await submit(spool, "e1", [start("e1")], type_="order.received")
        assert len(await spool.list_timers()) == 1
    conn = await asyncpg.connect(pg_url)
    try:
        assert (
            await conn.fetchval("SELECT version FROM postbackd_schema") == pg_schema.SCHEMA_VERSION
        )  # every step since 1
    finally:
        await conn.close()


async def test_two_postgres_nodes_claim_disjoint_timers(pg_url: str) -> None:
    nodes = [await open_spool(pg_url, node=name) for name in ("node-a", "node-b")]
    try:
        changes: list[TimerChange] = [start(f"e{i}", f"o{i}", within=0.0) for i in range(60)]
        events = [
            (make_event(f"e{i}", order=f"o{i}", type_="order.received"), []) for i in range(60)
        ]
        await nodes[0].submit_many(events, source="test", timers=changes)
        now = time.time() + 0.01
        claims = await asyncio.gather(
            *(node.claim_due_timers(now, 30.0, 20) for node in nodes for _ in range(3))
        )
        ids = [timer.id for claim in claims for timer in claim]
        assert len(ids) == 60 and len(set(ids)) == 60
    finally:
        for node in nodes:
            await node.close()
