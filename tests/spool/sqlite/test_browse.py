"""The request log's pages (`Spool.list_deliveries`) agree with a plain filter over every row on
every filter, time range and page, walk the indexes they name, and count finished deliveries
per minute."""

from __future__ import annotations

import itertools
import random
import sqlite3
import time
from pathlib import Path

from postbackd.spool import Spool, open_spool
from postbackd.spool.model import DeliveryState, DeliverySummary, ListFilter
from postbackd.spool.sqlite.browse import INDEXES, ORDER_INDEX, choose_index, list_page
from tests.spool.helpers import add, new_delivery, result

S = DeliveryState
CUSTOMERS = ("acme", "globex", "initech")
TYPES = ("order.shipped", "order.cancelled", "order.delivered")


async def _filled(path: Path) -> tuple[Spool, list[float]]:
    """120 deliveries over 3 customers, 6 triggers, 3 types, 4 states; their created_at."""
    spool = await open_spool(path)
    rng = random.Random(3)
    for i in range(120):
        customer = CUSTOMERS[i % 3]
        delivery = new_delivery(
            f"d-{i:03d}",
            trigger=f"{customer}-{rng.randrange(2)}",
            order=f"o-{i % 40}",
            customer=customer,
            event_type=rng.choice(TYPES),
        )
        await add(spool, f"e-{i:03d}", delivery, order=f"o-{i % 40}", customer=customer)
        if i % 4:
            state = (S.DONE, S.DEAD, S.HELD)[i % 4 - 1]
            if state is S.HELD:
                await spool.verbs.hold([delivery.id])
            else:
                await spool.record_attempt(result(delivery.id, state))
    rows, _ = await spool.list_deliveries(limit=1000)
    return spool, sorted(row.created_at for row in rows)


async def _all_pages(list_page, filters: ListFilter, limit: int) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(200):
        rows, cursor = await list_page(filters, limit, cursor)
        ids.extend(row.id for row in rows)
        if cursor is None:
            return ids
    raise AssertionError("pagination did not end")


def _matches(row: DeliverySummary, f: ListFilter) -> bool:
    return (
        f.state in (None, row.state)
        and f.customer in (None, row.customer)
        and f.trigger in (None, row.trigger)
        and f.order in (None, row.order_id)
        and f.event_type in (None, row.event_type)
        and (f.since is None or row.created_at >= f.since)
        and (f.until is None or row.created_at < f.until)
    )


async def test_pages_match_a_plain_filter_for_every_filter(tmp_path: Path) -> None:
    spool, times = await _filled(tmp_path / "spool.db")
    everything, _ = await spool.list_deliveries(limit=1000)
    assert len(everything) == 120
    try:
        middle, late = times[40], times[90]
        combos = itertools.product(
            (None, "acme"),
            (None, "globex-1"),
            (None, S.DEAD, S.HELD),
            (None, "order.cancelled"),
            (None, "o-7"),
            ((None, None), (middle, None), (None, late), (middle, late)),
        )
        checked = 0
        for customer, trigger, state, event_type, order, (since, until) in combos:
            filters = ListFilter(state, customer, trigger, order, event_type, since, until)

            async def pages(f, limit, cursor):
                return await spool.list_deliveries(f, limit=limit, cursor=cursor)

            expected = [row.id for row in everything if _matches(row, filters)]
            assert await _all_pages(pages, filters, 7) == expected, filters
            checked += bool(expected)
        assert checked > 50  # most combinations select something
    finally:
        await spool.close()


async def test_indexes_it_names_exist_and_the_smallest_is_walked(tmp_path: Path) -> None:
    spool, _ = await _filled(tmp_path / "spool.db")
    await spool.close()
    conn = sqlite3.connect(tmp_path / "spool.db")
    names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert {*INDEXES.values(), ORDER_INDEX} <= names  # renamed in spool_schema? rename here
    everyone = ListFilter(customer="acme", trigger="acme-1", state=S.DONE)
    assert choose_index(conn, everyone, None, None) == INDEXES["trigger_name"]
    assert choose_index(conn, ListFilter(order="o-1", customer="acme"), None, None) == ORDER_INDEX
    assert choose_index(conn, ListFilter(), None, None) is None
    conn.close()


async def test_a_big_customer_few_held_walks_the_state_index(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path / "spool.db")
    await spool.close()
    conn = sqlite3.connect(tmp_path / "spool.db")
    conn.executemany(
        "INSERT INTO deliveries (id, event_id, trigger_name, plugin, customer, event_type, "
        "format, content_type, state, ordered, created_at, next_attempt_at, updated_at) "
        "VALUES (?, ?, 'acme-1', 'webhook', 'acme', 'order.shipped', 'json', "
        "'application/json', ?, 0, ?, 0, 0)",
        [(f"d{i}", f"e{i}", "held" if i % 100 == 0 else "done", i) for i in range(5000)],
    )
    conn.commit()
    held_acme = ListFilter(customer="acme", state=S.HELD)
    assert choose_index(conn, held_acme, None, None) == INDEXES["state"]  # 50 held, 5000 acme
    page, _ = list_page(conn, held_acme, 10, None)
    assert [row.id for row in page] == [f"d{i}" for i in range(4900, 3900, -100)]
    # in the newest 300 rows acme is below the first cap too, and is asked first
    assert choose_index(conn, held_acme, 4701, 5001) == INDEXES["customer"]
    conn.close()


async def test_throughput_counts_finished_deliveries_per_minute(tmp_path: Path) -> None:
    spool, _ = await _filled(tmp_path / "spool.db")
    try:
        counts = (await spool.stats()).by_state
        throughput = await spool.throughput(minutes=10, now=time.time())
        assert len(throughput.minutes) == 10
        assert throughput.done == counts["done"] == 30
        assert throughput.failed == counts["dead"] == 30
        assert throughput.success_rate == 0.5
        assert throughput.minutes[-1].start <= time.time() < throughput.minutes[-1].start + 60
        later = await spool.throughput(minutes=5, now=time.time() + 3600)
        assert later.success_rate is None and later.done == 0
    finally:
        await spool.close()
