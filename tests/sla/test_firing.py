"""The firing loop on a real spool (both backends): a daemon that dies after storing an alert
but before marking its timer fires it again at its next start, and the alert is stored once;
a timer whose rule is gone is cancelled; the loop sleeps until the next due time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from postbackd.config.model import Location, SlaRule
from postbackd.events import Event
from postbackd.plugin import SubmitResult
from postbackd.sla import SlaFiring, alert_id, timer_changes
from postbackd.spool import Spool, open_spool
from tests.spool.helpers import make_event

RULE = SlaRule(
    "ship", "order.received", ("order.shipped",), 0.2, "order.delayed", Location(Path("x"), 1)
)


def generation_with(rules: dict[str, SlaRule]) -> SimpleNamespace:
    """What the loop reads of the current configuration generation."""
    return SimpleNamespace(config=SimpleNamespace(sla=rules, daemon=SimpleNamespace(lease=30.0)))


async def start_timer(spool: Spool, order: str = "o1") -> None:
    received = make_event(f"received-{order}", order=order, type_="order.received")
    changes = timer_changes({"ship": RULE}, {"acme"}, [received])
    await spool.submit_many([(received, [])], source="test", timers=changes)


def storing(spool: Spool, seen: list[SubmitResult]):  # type: ignore[no-untyped-def]
    async def submit(event: Event) -> SubmitResult:
        outcome = await spool.submit(event, [], source="sla")
        result = SubmitResult(event.id, outcome.duplicate, outcome.deliveries)
        seen.append(result)
        return result

    return submit


async def test_a_crash_between_storing_and_marking_fires_again_and_stores_once(
    spool_target: Path | str,
) -> None:
    first = await open_spool(spool_target, exclusive=True, node="n1")
    seen: list[SubmitResult] = []
    try:
        await start_timer(first)
        await asyncio.sleep(0.3)

        async def store_then_die(event: Event) -> SubmitResult:
            await storing(first, seen)(event)
            raise asyncio.CancelledError  # the process is gone before the timer is marked

        firing = SlaFiring(first, lambda: generation_with({"ship": RULE}), store_then_die)  # type: ignore[arg-type,return-value]
        with pytest.raises(asyncio.CancelledError):
            await firing.fire_due()
        assert [t.state for t in await first.list_timers(None)] == ["pending"]
    finally:
        await first.close()
    again = await open_spool(spool_target, exclusive=True, node="n1")
    try:
        firing = SlaFiring(again, lambda: generation_with({"ship": RULE}), storing(again, seen))  # type: ignore[arg-type,return-value]
        assert await firing.fire_due() == 1
        assert [r.duplicate for r in seen] == [False, True]
        (fired,) = await again.list_timers("fired")
        assert fired.id == alert_id("ship", "acme", "o1")
        stored = await again.previous_event("acme", "o1", "no-such-event")
        assert stored is not None and stored["id"] == fired.id
        assert stored["type"] == "order.delayed" and stored["data"]["sla"]["rule"] == "ship"
    finally:
        await again.close()


async def test_a_timer_of_a_removed_rule_is_cancelled_not_fired(spool: Spool) -> None:
    await start_timer(spool)
    await asyncio.sleep(0.3)
    seen: list[SubmitResult] = []
    firing = SlaFiring(spool, lambda: generation_with({}), storing(spool, seen))  # type: ignore[arg-type,return-value]
    assert await firing.fire_due() == 1
    assert seen == []
    (cancelled,) = await spool.list_timers("cancelled")
    assert cancelled.note == "rule 'ship' is no longer in the configuration"


async def test_the_loop_sleeps_until_the_due_time_and_wakes_for_a_new_timer(
    spool: Spool,
) -> None:
    seen: list[SubmitResult] = []
    firing = SlaFiring(spool, lambda: generation_with({"ship": RULE}), storing(spool, seen))  # type: ignore[arg-type,return-value]
    loop = asyncio.create_task(firing.run())
    try:
        await asyncio.sleep(0.2)  # asleep with nothing to do (up to MAX_SLEEP)
        started = time.monotonic()
        await start_timer(spool, "o7")
        firing.wake()  # what intake does when it starts a timer
        deadline = time.monotonic() + 10
        while not seen:
            assert time.monotonic() < deadline, "the woken loop did not fire the timer"
            await asyncio.sleep(0.02)
        assert time.monotonic() - started >= RULE.within - 0.05  # not before it was due
        assert seen[0].event_id == alert_id("ship", "acme", "o7")
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
