"""Turns per order (the AMQP source's sequencing): real asyncio tasks, no broker needed."""

from __future__ import annotations

import asyncio

import pytest

from postbackd.events import Event, parse_event
from postbackd.sources.amqp.order import EarlierNotStored, OrderTurns, Turn


def status(event_id: str, order: str | None, customer: str = "acme") -> Event:
    data = {"orderId": order} if order is not None else {"note": "no order"}
    return parse_event(
        {"id": event_id, "type": "order.shipped", "customer": customer, "data": data}
    )


async def run_turn(
    turn: Turn, log: list[str], name: str, gate: asyncio.Event | None = None
) -> None:
    async with turn:
        log.append(f"{name} in")
        if gate is not None:
            await gate.wait()
        log.append(f"{name} out")


async def test_a_later_status_of_the_same_order_waits_others_do_not() -> None:
    turns, log, gate = OrderTurns(), [], asyncio.Event()
    first = asyncio.create_task(run_turn(turns.take([status("a", "o-1")]), log, "first", gate))
    same = asyncio.create_task(run_turn(turns.take([status("b", "o-1")]), log, "same"))
    other = asyncio.create_task(run_turn(turns.take([status("c", "o-2")]), log, "other"))
    loose = asyncio.create_task(run_turn(turns.take([status("d", None)]), log, "loose"))
    await asyncio.wait_for(asyncio.gather(other, loose), timeout=5)
    assert "same in" not in log  # still behind "first"
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, same), timeout=5)
    assert log.index("first out") < log.index("same in")
    assert turns._last == {}  # nothing left behind once every turn is over


async def test_the_same_order_number_of_another_customer_is_another_order() -> None:
    turns, log, gate = OrderTurns(), [], asyncio.Event()
    first = asyncio.create_task(run_turn(turns.take([status("a", "o-1")]), log, "acme", gate))
    other = turns.take([status("b", "o-1", customer="globex")])
    await asyncio.wait_for(run_turn(other, log, "globex"), timeout=5)
    gate.set()
    await first


async def test_when_an_earlier_message_is_not_stored_the_later_ones_go_back_too() -> None:
    turns = OrderTurns()
    failing, second, third = (turns.take([status(i, "o-1")]) for i in ("a", "b", "c"))
    with pytest.raises(RuntimeError):
        async with failing:
            raise RuntimeError("spool unavailable")
    with pytest.raises(EarlierNotStored, match="does not overtake"):
        async with second:
            pass
    with pytest.raises(EarlierNotStored):
        async with third:
            pass
    async with turns.take([status("d", "o-1")]):  # a fresh message after them goes ahead
        pass
    assert turns._last == {}


async def test_a_turn_released_without_running_counts_as_not_stored() -> None:
    turns = OrderTurns()
    never_ran = turns.take([status("a", "o-1")])
    later = turns.take([status("b", "o-1")])
    never_ran.release(stored=False)
    never_ran.release(stored=True)  # only the first call counts
    with pytest.raises(EarlierNotStored):
        async with later:
            pass


async def test_a_message_with_events_of_two_orders_waits_for_both() -> None:
    turns, log = OrderTurns(), []
    gates = asyncio.Event(), asyncio.Event()
    one = asyncio.create_task(run_turn(turns.take([status("a", "o-1")]), log, "one", gates[0]))
    two = asyncio.create_task(run_turn(turns.take([status("b", "o-2")]), log, "two", gates[1]))
    both = asyncio.create_task(
        run_turn(turns.take([status("c", "o-1"), status("d", "o-2")]), log, "both")
    )
    gates[0].set()
    await one
    await asyncio.sleep(0.05)
    assert "both in" not in log
    gates[1].set()
    await asyncio.wait_for(asyncio.gather(two, both), timeout=5)
    assert log[-2:] == ["both in", "both out"]
