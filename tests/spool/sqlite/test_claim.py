"""claim_due and next_due_at when destinations are excluded and the backlog is bigger than the
window looked at (the window is made small here instead of filling thousands of rows)."""

from __future__ import annotations

import time

import pytest

import postbackd.spool.sqlite.claim as spool_claim
from postbackd.spool import Spool
from postbackd.spool.model import DeliveryState
from tests.spool.helpers import add, new_delivery, result

S = DeliveryState
DOWN = "https://down.example:443"
UP = "https://up.example:443"


@pytest.fixture(autouse=True)
def small_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_claim, "WINDOW", 4)


async def fill(spool: Spool, now: float) -> None:
    """Ten old rows for DOWN at the head of the due index, then newer rows elsewhere."""
    for index in range(10):
        await add(
            spool,
            f"down{index}",
            new_delivery(
                f"down{index}",
                order=f"d{index}",
                destination=DOWN,
                next_attempt_at=now - 1000 + index,
            ),
            order=f"d{index}",
        )
    await add(
        spool,
        "e-up",
        new_delivery("up", order="u1", destination=UP, next_attempt_at=now - 500),
        order="u1",
    )
    await add(
        spool, "e-new", new_delivery("new", order="n1", next_attempt_at=now - 400), order="n1"
    )
    await add(
        spool,
        "e-up2",
        new_delivery("up2", order="u2", destination=UP, next_attempt_at=now - 300),
        order="u2",
    )
    await add(
        spool, "e-later", new_delivery("later", order="l1", next_attempt_at=now + 900), order="l1"
    )


async def test_excluded_head_beyond_the_window_is_skipped_oldest_first(spool: Spool) -> None:
    now = time.time()
    await fill(spool, now)
    claimed = await spool.claim_due(now, 2, exclude_destinations=[DOWN])
    assert [d.id for d in claimed] == ["up", "new"]
    claimed = await spool.claim_due(now, 10, exclude_destinations=[DOWN, UP])
    assert claimed == []
    claimed = await spool.claim_due(now, 10, exclude_destinations=[DOWN])
    assert [d.id for d in claimed] == ["up2"]
    assert [d.id for d in await spool.claim_due(now, 3)] == ["down0", "down1", "down2"]


async def test_next_due_at_leaves_out_excluded_destinations(spool: Spool) -> None:
    now = time.time()
    await fill(spool, now)
    assert await spool.next_due_at() == pytest.approx(now - 1000)
    assert await spool.next_due_at([DOWN]) == pytest.approx(now - 500)
    assert await spool.next_due_at([DOWN, UP]) == pytest.approx(now - 400)
    await spool.claim_due(now, 10, exclude_destinations=[DOWN])
    assert await spool.next_due_at([DOWN]) == pytest.approx(now + 900)


async def test_destination_is_learnt_from_attempts(spool: Spool) -> None:
    now = time.time()
    await add(spool, "e1", new_delivery("d1"))
    (claimed,) = await spool.claim_due(now + 1, 10, exclude_destinations=[DOWN])
    assert claimed.destination is None  # unknown before the first attempt: never excluded
    await spool.record_attempt(
        result("d1", S.PENDING, outcome="retry", status=503, next_at=now, destination=DOWN)
    )
    assert await spool.claim_due(now + 1, 10, exclude_destinations=[DOWN]) == []
    assert await spool.next_due_at([DOWN]) is None
    (again,) = await spool.claim_due(now + 1, 10)
    assert again.destination == DOWN


async def test_ordered_delivery_behind_an_excluded_one_is_rescheduled(spool: Spool) -> None:
    now = time.time()
    await add(
        spool, "e1", new_delivery("first", ordered=True, destination=DOWN, next_attempt_at=now - 10)
    )
    await add(spool, "e2", new_delivery("second", ordered=True, next_attempt_at=now - 5))
    assert await spool.claim_due(now, 10, exclude_destinations=[DOWN]) == []
    due = await spool.next_due_at([DOWN])
    assert due is not None and due >= now + spool_claim.BLOCKED_RECHECK
    (first,) = await spool.claim_due(now, 10)
    assert first.id == "first"
    await spool.record_attempt(result("first", S.DONE, destination=DOWN))
    (second,) = await spool.claim_due(time.time() + 1, 10, exclude_destinations=[DOWN])
    assert second.id == "second"
