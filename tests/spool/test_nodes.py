"""Node heartbeats and configuration skew at the spool: over both backends, then two nodes of
one PostgreSQL fleet (two daemon-mode spools on one fresh database)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from postbackd.spool import TRIGGER_INACTIVE, NodeBeat, Spool, TriggerSync, open_spool
from postbackd.spool.postgres.store import PostgresSpool
from tests.pg_fixtures import pg_cluster, pg_url
from tests.spool.helpers import S, add, new_delivery, state_of

__all__ = ["pg_cluster", "pg_url"]


def beat(
    node: str, *triggers: str, inactive: tuple[str, ...] = (), fingerprint: str = "f1"
) -> NodeBeat:
    return NodeBeat(
        node=node,
        generation=1,
        fingerprint=fingerprint,
        started_at=time.time(),
        triggers=tuple(sorted({*triggers, *inactive})),
        active_triggers=tuple(sorted(triggers)),
    )


async def test_a_node_that_beats_is_listed_live(spool_target: Path | str) -> None:
    spool = await open_spool(spool_target, exclusive=True, node="solo")
    try:
        assert await spool.live_nodes() == []
        await spool.heartbeat(beat("solo", "t1", inactive=("t2",)))
        (node,) = await spool.live_nodes()
        assert (node.node, node.generation, node.fingerprint) == ("solo", 1, "f1")
        assert (node.triggers, node.active_triggers) == (("t1", "t2"), ("t1",))
        assert node.started_at <= node.last_seen <= time.time() + 5
        assert not await spool.leave_to_others("nothing", "t1")  # no other node here
    finally:
        await spool.close()


@pytest.fixture
async def two_nodes(pg_url: str) -> AsyncIterator[tuple[Spool, Spool]]:
    a = await open_spool(pg_url, exclusive=True, node="node-a")
    b = await open_spool(pg_url, exclusive=True, node="node-b")
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_sync_spares_what_another_live_node_has(two_nodes: tuple[Spool, Spool]) -> None:
    a, b = two_nodes
    await add(a, "e1", new_delivery("of-t", trigger="t", order="o1"), order="o1")
    await add(a, "e2", new_delivery("of-p", trigger="p", order="o2"), order="o2")
    await add(a, "e3", new_delivery("of-x", trigger="x", order="o3"), order="o3")
    await a.heartbeat(beat("node-a", "t", "p"))
    await b.heartbeat(beat("node-b", inactive=("p",), fingerprint="f2"))

    # B lacks t and has p inactive: A delivers both, so nothing is held or cancelled but x
    assert await b.sync_triggers(active=(), inactive={"p"}) == TriggerSync(0, 0, 1)
    assert await state_of(b, "of-t") is S.PENDING
    assert await state_of(b, "of-p") is S.PENDING
    assert await state_of(b, "of-x") is S.CANCELLED
    assert await b.claim_due(time.time() + 1, 10) == []  # B claims only what it delivers
    assert await b.next_due_at() is None  # and does not wake for the rest
    claimed = await a.claim_due(time.time() + 1, 10)
    assert sorted(d.id for d in claimed) == ["of-p", "of-t"]
    assert not await a.leave_to_others("of-t", "t")  # nobody else delivers t: A settles it
    assert await state_of(a, "of-t") is S.INFLIGHT
    await b.heartbeat(beat("node-b", "t", inactive=("p",), fingerprint="f2"))
    assert await a.leave_to_others("of-t", "t")  # now B does: put back, due, for B
    assert await state_of(a, "of-t") is S.PENDING
    await b.heartbeat(beat("node-b", inactive=("p",), fingerprint="f2"))

    # A leaves: p is now delivered by no live node (B holds it), t known by none (cancelled)
    await a.release_inflight(["of-p"], time.time())
    await a.close()
    assert [n.node for n in await b.live_nodes()] == ["node-b"]
    assert await b.sync_triggers(active=(), inactive={"p"}) == TriggerSync(1, 0, 1)
    detail = await b.get_delivery("of-p")
    assert detail is not None
    assert (detail.summary.state, detail.summary.held_reason) == (S.HELD, TRIGGER_INACTIVE)
    assert await state_of(b, "of-t") is S.CANCELLED


async def test_nodes_see_each_others_configuration(two_nodes: tuple[Spool, Spool]) -> None:
    a, b = two_nodes
    await a.heartbeat(beat("ignored: the spool names it", "t"))
    await b.heartbeat(beat("node-b", "t", fingerprint="f2"))
    seen = await a.live_nodes()
    assert [(n.node, n.fingerprint) for n in seen] == [("node-a", "f1"), ("node-b", "f2")]
    assert seen == await b.live_nodes()


async def test_a_claim_waits_for_an_earlier_deliverys_outcome_being_committed(
    two_nodes: tuple[Spool, Spool],
) -> None:
    """Node B is committing the outcome of an order's first delivery while node A claims the
    second. A waits for that commit and takes the second at once — it does not put it off by
    the blocked-recheck minute, which B's wake-up (in the same commit) could not have reached."""
    a, b = two_nodes
    await add(a, "e1", new_delivery("first", ordered=True))
    await add(a, "e2", new_delivery("second", ordered=True))
    assert [d.id for d in await b.claim_due(time.time() + 1, 1)] == ["first"]
    assert isinstance(b, PostgresSpool)
    outcome = await asyncpg.connect(b.url)  # B's outcome transaction, not yet committed
    try:
        transaction = outcome.transaction()
        await transaction.start()
        await outcome.execute("UPDATE deliveries SET state = 'done' WHERE id = 'first'")
        claim = asyncio.ensure_future(a.claim_due(time.time() + 1, 10))
        await asyncio.sleep(0.5)
        assert not claim.done()  # waiting for B's commit, not reading around it
        await transaction.commit()
        claimed = await asyncio.wait_for(claim, 10)
    finally:
        await outcome.close()
    assert [d.id for d in claimed] == ["second"]
