"""The spool: intake, group commit, claiming (ordered, supersede), attempts, schema versions.

The contract suite: every test taking the `spool` fixture runs on both backends — a real SQLite
file under tmp_path with the spool's real threads, and a fresh database on the real PostgreSQL
of ``scripts/postgres.sh`` — so the two cannot drift. Tests of one backend's own machinery are
marked ``sqlite_only``. The helpers are in `tests.spool.helpers`; the `spool` fixture (over both
backends) in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest

from postbackd.plugin import SpoolUnavailable
from postbackd.spool import Spool, open_spool
from postbackd.spool.model import (
    ID_MATCHES_SHOWN,
    TRIGGER_INACTIVE,
    AmbiguousDeliveryId,
    DeliveryState,
    SpoolError,
    SubmitOutcome,
    UnknownDeliveryId,
)
from postbackd.spool.sqlite.schema import SCHEMA_VERSION
from tests.spool.helpers import add, make_event, new_delivery, result, soon, state_of

S = DeliveryState
INTEGRITY_ERRORS = (sqlite3.IntegrityError, asyncpg.UniqueViolationError)


# ---------------------------------------------------------------------- open and schema


async def test_open_creates_parent_directories_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "spool.db"
    async with await open_spool(path) as spool:
        assert spool.owner
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_migrates_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    path.touch()  # version 0: a new, empty file
    async with await open_spool(path) as spool:
        await add(spool, "e1", new_delivery("d1"))
        assert (await spool.stats()).by_state["pending"] == 1
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"events", "deliveries", "attempts"} <= tables


async def test_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(SpoolError) as caught:
        await open_spool(path)
    assert str(caught.value) == (
        f"spool {path} has schema version {SCHEMA_VERSION + 5} but this postbackd understands "
        f"up to {SCHEMA_VERSION}; upgrade postbackd or use another spool file"
    )


async def test_other_sqlite_database_and_garbage_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(SpoolError, match="not a postbackd spool"):
        await open_spool(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(SpoolError, match=f"cannot open spool {garbage}"):
        await open_spool(garbage)


async def test_synchronous_normal_is_accepted_and_bad_values_refused(tmp_path: Path) -> None:
    async with await open_spool(tmp_path / "a.db", synchronous="NORMAL") as spool:
        assert (await add(spool, "e1", new_delivery("d1"))).deliveries == 1
    with pytest.raises(ValueError, match="FULL or NORMAL"):
        await open_spool(tmp_path / "b.db", synchronous="OFF")


async def test_closed_spool_is_unavailable(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path / "spool.db")
    await spool.close()
    await spool.close()  # twice is harmless
    with pytest.raises(SpoolUnavailable, match="is closed"):
        await add(spool, "e1", new_delivery("d1"))


# ---------------------------------------------------------------------- intake


async def test_submit_is_idempotent_on_event_id(spool: Spool) -> None:
    first = await add(spool, "e1", new_delivery("d1"), new_delivery("d2", trigger="t2"))
    again = await add(spool, "e1", new_delivery("d3", trigger="t3"))
    assert first == SubmitOutcome("e1", duplicate=False, deliveries=2)
    assert again == SubmitOutcome("e1", duplicate=True, deliveries=0)
    stats = await spool.stats()
    assert stats.events == 1
    assert stats.deliveries == 2
    assert await spool.get_delivery("d3") is None


async def test_previous_event_is_the_orders_last_stored_event_before_the_one_named(
    spool: Spool,
) -> None:
    assert await spool.previous_event("acme", "o1", "e1") is None
    await add(spool, "e1")
    await add(spool, "x1", order="o2")
    await add(spool, "x2", order="o1", customer="globex")
    await add(spool, "e2")
    await add(spool, "u1", order=None)
    latest = await spool.previous_event("acme", "o1", "e3")
    assert latest is not None and latest["id"] == "e2"
    assert latest["data"]["orderId"] == "o1" and latest["type"] == "order.shipped"
    before_e2 = await spool.previous_event("acme", "o1", "e2")
    assert before_e2 is not None and before_e2["id"] == "e1"
    assert await spool.previous_event("acme", "o1", "e1") is None
    other = await spool.previous_event("globex", "o1", "e9")
    assert other is not None and other["id"] == "x2"
    assert await spool.previous_event("acme", "o3", "e9") is None


async def test_a_batch_has_an_outcome_per_event_in_order(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("d1"))
    outcomes = await spool.submit_many(
        [
            (make_event("e2"), [new_delivery("d2")]),
            (make_event("e1"), [new_delivery("d9")]),  # known already: a duplicate
            (make_event("e3"), []),
        ],
        source="test",
    )
    assert outcomes == [
        SubmitOutcome("e2", duplicate=False, deliveries=1),
        SubmitOutcome("e1", duplicate=True, deliveries=0),
        SubmitOutcome("e3", duplicate=False, deliveries=0),
    ]
    assert (await spool.stats()).events == 3
    assert await spool.get_delivery("d9") is None


async def test_an_event_twice_in_one_batch_is_stored_once(spool: Spool) -> None:
    outcomes = await spool.submit_many(
        [
            (make_event("e1"), [new_delivery("d1")]),
            (make_event("e1"), [new_delivery("d2")]),  # a client sent it twice at once
            (make_event("e2"), [new_delivery("d3", order="o2")]),
        ],
        source="test",
    )
    assert [o.duplicate for o in outcomes] == [False, True, False]
    assert (await spool.stats()).deliveries == 2
    assert await spool.get_delivery("d2") is None
    assert await state_of(spool, "d3") is S.PENDING


@pytest.mark.sqlite_only
async def test_a_batch_is_one_group_commit(spool: Spool) -> None:
    commits = spool.commits
    await spool.submit_many(
        [(make_event("e1"), [new_delivery("d1")]), (make_event("e2"), [])], source="test"
    )
    assert spool.commits == commits + 1


async def test_a_batch_that_fails_stores_none_of_its_events(spool: Spool) -> None:
    # Two events of the batch claim one delivery id: the second insert fails, and the first
    # event — committed in the same transaction — must not be stored either.
    with pytest.raises(INTEGRITY_ERRORS):
        await spool.submit_many(
            [
                (make_event("e1"), [new_delivery("same")]),
                (make_event("e2"), [new_delivery("same")]),
            ],
            source="test",
        )
    assert (await spool.stats()).events == 0
    assert await spool.get_delivery("same") is None
    assert await add(spool, "e1", new_delivery("d1")) == SubmitOutcome("e1", False, 1)


async def test_unmatched_event_and_render_failure(spool: Spool) -> None:
    await add(spool, "e0")
    await add(
        spool,
        "e1",
        new_delivery("d1", state=S.FAILED, body=None, render_error="line 3: 'foo' is undefined"),
    )
    stats = await spool.stats()
    assert (stats.events, stats.unmatched_events) == (2, 1)
    detail = await spool.get_delivery("d1")
    assert detail is not None
    assert detail.summary.state is S.FAILED
    assert detail.summary.finished_at is not None
    assert detail.summary.last_error == detail.render_error == "line 3: 'foo' is undefined"
    assert await spool.claim_due(soon(), 10) == []


@pytest.mark.sqlite_only
async def test_group_commit_shares_commits_and_releases_after_commit(
    spool: Spool, tmp_path: Path
) -> None:
    """Concurrent submits share transactions; each caller sees its row committed on return."""
    observer = sqlite3.connect(tmp_path / "spool.db")
    seen_committed: list[bool] = []

    async def submit_and_check(index: int) -> None:
        await add(spool, f"e{index}", new_delivery(f"d{index}", order=f"o{index}"))
        row = observer.execute("SELECT 1 FROM deliveries WHERE id = ?", (f"d{index}",))
        seen_committed.append(row.fetchone() is not None)

    before = spool.commits
    await asyncio.gather(*(submit_and_check(index) for index in range(300)))
    observer.close()
    assert seen_committed == [True] * 300
    assert 1 <= spool.commits - before < 300 // 2
    assert (await spool.stats()).by_state["pending"] == 300


async def test_a_failing_write_fails_only_its_caller(spool: Spool) -> None:
    await add(spool, "e0", new_delivery("taken"))
    outcomes = await asyncio.gather(
        add(spool, "e1", new_delivery("d1", order="o1")),
        add(spool, "e2", new_delivery("taken", order="o2")),  # delivery id already stored
        add(spool, "e3", new_delivery("d3", order="o3")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], Exception)  # the backend's integrity error
    assert [o.deliveries for o in (outcomes[0], outcomes[2])] == [1, 1]  # type: ignore[union-attr]
    stats = await spool.stats()
    assert stats.events == 3  # e2 was rolled back with its delivery
    assert stats.deliveries == 3


@pytest.mark.sqlite_only
async def test_disk_full_is_spool_unavailable(spool: Spool) -> None:
    pages = await spool._writer.call(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    await spool._writer.call(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))
    big = b"x" * 200_000
    with pytest.raises(SpoolUnavailable, match="cannot be written: the disk is full"):
        await add(spool, "e1", new_delivery("d1", body=big))
    await spool._writer.call(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
    assert (await add(spool, "e1", new_delivery("d1", body=big))).deliveries == 1


async def test_min_free_refuses_intake_but_records_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    async with await open_spool(path) as spool:
        await add(spool, "e1", new_delivery("d1"))
    async with await open_spool(path, min_free=2**62) as spool:
        with pytest.raises(SpoolUnavailable, match="below min_free"):
            await add(spool, "e2", new_delivery("d2"))
        await spool.record_attempt(result("d1", S.DONE))
        assert await state_of(spool, "d1") is S.DONE


async def test_new_delivery_state_is_checked(spool: Spool) -> None:
    with pytest.raises(ValueError, match="cannot be done"):
        await add(spool, "e1", new_delivery("d1", state=S.DONE))


# ---------------------------------------------------------------------- id prefixes


async def test_a_delivery_id_prefix_resolves_to_the_one_id_it_starts(spool: Spool) -> None:
    ids = ["3c3f544b-0001", "3c3f9999-0002", "3c3e0000-0003", "3c3g0000-0004", "d1"]
    await add(spool, "e1", *(new_delivery(i, trigger=f"t{n}") for n, i in enumerate(ids)))
    assert await spool.resolve_delivery_id("3c3f544b-0001") == "3c3f544b-0001"  # whole
    assert await spool.resolve_delivery_id("3c3f5") == "3c3f544b-0001"
    assert await spool.resolve_delivery_id("3c3e") == "3c3e0000-0003"
    assert await spool.resolve_delivery_id("d1") == "d1"  # a short whole id still works
    with pytest.raises(AmbiguousDeliveryId) as ambiguous:
        await spool.resolve_delivery_id("3c3f")
    assert ambiguous.value.matches == ("3c3f544b-0001", "3c3f9999-0002")
    assert not ambiguous.value.more
    assert "3c3f544b-0001, 3c3f9999-0002" in str(ambiguous.value)
    for unknown in ("3c3d", "3c3f544c", "3c3", "d", "", "ü3c3f", "3c3f%"):
        with pytest.raises(UnknownDeliveryId):
            await spool.resolve_delivery_id(unknown)
    with pytest.raises(UnknownDeliveryId, match="at least 4 characters"):
        await spool.resolve_delivery_id("3c3")


async def test_an_ambiguous_prefix_lists_a_bounded_number_of_ids(spool: Spool) -> None:
    many = [f"abcd{n:04d}" for n in range(ID_MATCHES_SHOWN + 5)]
    await add(spool, "e1", *(new_delivery(i, trigger=i) for i in many))
    assert await spool.match_delivery_ids("abcd", limit=3) == many[:3]
    with pytest.raises(AmbiguousDeliveryId) as ambiguous:
        await spool.resolve_delivery_id("abcd")
    assert ambiguous.value.matches == tuple(many[:ID_MATCHES_SHOWN])
    assert ambiguous.value.more and str(ambiguous.value).count("abcd0") == ID_MATCHES_SHOWN


# ---------------------------------------------------------------------- claiming


async def test_claim_due_marks_inflight_oldest_first(spool: Spool) -> None:
    now = time.time()
    await add(spool, "e1", new_delivery("late", next_attempt_at=now - 10), order="o1")
    await add(spool, "e2", new_delivery("early", order="o2", next_attempt_at=now - 100), order="o2")
    await add(
        spool, "e3", new_delivery("future", order="o3", next_attempt_at=now + 3600), order="o3"
    )
    claimed = await spool.claim_due(now, 10)
    assert [d.id for d in claimed] == ["early", "late"]
    assert all(d.state is S.INFLIGHT for d in claimed)
    assert claimed[0].body == b'{"status":"shipped"}'
    assert await spool.claim_due(now, 10) == []
    assert await spool.next_due_at() == pytest.approx(now + 3600)


async def test_claim_due_respects_limit_and_exclusions(spool: Spool) -> None:
    for index in range(6):
        dest = "https://down.example:443" if index < 2 else None
        await add(
            spool,
            f"e{index}",
            new_delivery(f"d{index}", order=f"o{index}", destination=dest),
            order=f"o{index}",
        )
    claimed = await spool.claim_due(
        soon(), 3, exclude=["d2"], exclude_destinations=["https://down.example:443"]
    )
    assert [d.id for d in claimed] == ["d3", "d4", "d5"]
    assert await spool.claim_due(soon(), 0) == []


async def test_release_inflight_does_not_count_an_attempt(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("d1"))
    await spool.claim_due(soon(), 10)
    later = time.time() + 30
    assert await spool.release_inflight(["d1", "unknown"], later) == 1
    assert await spool.claim_due(soon(), 10) == []
    (again,) = await spool.claim_due(later + 1, 10)
    assert again.attempts == 0


async def test_hold_inflight_holds_a_claimed_delivery_in_one_commit(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("d1"))
    await add(spool, "e2", new_delivery("d2"))
    (claimed, _) = await spool.claim_due(soon(), 10)
    commits = getattr(spool, "commits", 0)
    assert await spool.hold_inflight(claimed.id, TRIGGER_INACTIVE)
    if hasattr(spool, "commits"):  # SQLite group-commits; PostgreSQL runs it as one statement
        assert spool.commits == commits + 1  # never pending in between: nothing can claim it
    assert await state_of(spool, claimed.id) is S.HELD
    assert not await spool.hold_inflight(claimed.id, TRIGGER_INACTIVE)  # held, not inflight
    assert await spool.claim_due(soon() + 3600, 10) == []
    detail = await spool.get_delivery(claimed.id)
    assert detail is not None and detail.summary.held_reason == TRIGGER_INACTIVE
    assert detail.summary.attempts == 0


async def test_ordered_deliveries_wait_for_earlier_ones(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("first", ordered=True))
    await add(spool, "e2", new_delivery("second", ordered=True))
    await add(spool, "e3", new_delivery("other-order", ordered=True, order="o2"), order="o2")
    await add(spool, "e4", new_delivery("unordered", trigger="t2"))
    now = soon()
    claimed = await spool.claim_due(now, 10)
    assert sorted(d.id for d in claimed) == ["first", "other-order", "unordered"]
    assert await spool.claim_due(now + 60, 10) == []  # first is inflight

    retry_at = now + 600  # first fails and is scheduled again: second still waits
    await spool.record_attempt(
        result("first", S.PENDING, outcome="retry", next_at=retry_at, status=503)
    )
    assert await spool.claim_due(now + 60, 10) == []
    assert await spool.next_due_at() == pytest.approx(retry_at)

    assert await spool.verbs.hold(["first"]) == 1  # held: second still waits
    assert await spool.claim_due(now + 3600, 10) == []
    assert await spool.verbs.release(["first"]) == 1
    (again,) = await spool.claim_due(now + 3600, 10)
    assert again.id == "first"

    await spool.record_attempt(result("first", S.DEAD, outcome="fail", status=410))
    (second,) = await spool.claim_due(time.time() + 1, 10)  # dead releases the one behind it
    assert second.id == "second"


async def test_ordered_delivery_released_when_earlier_is_done(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("first", ordered=True))
    await add(spool, "e2", new_delivery("second", ordered=True))
    (first,) = await spool.claim_due(soon(), 10)
    assert first.id == "first"
    await spool.record_attempt(result("first", S.DONE))
    (second,) = await spool.claim_due(soon(), 10)
    assert second.id == "second"


async def test_supersede_cancels_older_pending_of_same_trigger_and_order(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("in-transit", ordered=True, supersede=True))
    await add(spool, "e2", new_delivery("other-trigger", trigger="t2", supersede=True))
    await add(spool, "e3", new_delivery("other-order", order="o2", supersede=True), order="o2")
    outcome = await add(spool, "e4", new_delivery("delivered", ordered=True, supersede=True))
    assert outcome.superseded == 1
    detail = await spool.get_delivery("in-transit")
    assert detail is not None
    assert detail.summary.state is S.CANCELLED
    assert detail.summary.last_error == "superseded by delivered"
    assert await state_of(spool, "other-trigger") is S.PENDING
    assert await state_of(spool, "other-order") is S.PENDING
    claimed = {d.id for d in await spool.claim_due(soon(), 10)}
    assert claimed == {"delivered", "other-trigger", "other-order"}


async def test_supersede_leaves_inflight_alone(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("shipped", ordered=True, supersede=True))
    await spool.claim_due(soon(), 10)
    await add(spool, "e2", new_delivery("delivered", ordered=True, supersede=True))
    assert await state_of(spool, "shipped") is S.INFLIGHT
    assert await spool.claim_due(soon(), 10) == []  # delivered waits behind it


# ---------------------------------------------------------------------- attempts and detail


async def test_record_attempt_and_detail_show_the_four_stages(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("d1"))
    await spool.claim_due(soon(), 10)
    request = {
        "method": "POST",
        "url": "https://hooks.example/in",
        "headers": {"webhook-signature": "***"},
        "body": b'{"status":"shipped"}',
    }
    await spool.record_attempt(
        result(
            "d1",
            S.PENDING,
            outcome="retry",
            next_at=time.time() - 1,
            status=503,
            error="HTTP 503",
            request=request,
            response={"status": 503, "headers": {"Retry-After": "1"}, "body": "busy"},
        )
    )
    await spool.claim_due(soon(), 10)
    await spool.record_attempt(
        result("d1", S.DONE, number=2, request=request, response={"status": 200, "body": "ok"})
    )
    detail = await spool.get_delivery("d1")
    assert detail is not None
    assert detail.summary.state is S.DONE
    assert detail.summary.attempts == 2
    assert detail.summary.last_status == 200
    assert detail.summary.last_error is None
    assert detail.summary.destination == "https://hooks.example:443"
    assert detail.summary.finished_at is not None
    assert detail.event["id"] == "e1" and detail.event["data"]["orderId"] == "o1"
    assert [a.outcome for a in detail.attempts] == ["retry", "ok"]
    assert detail.attempts[0].status == 503 and detail.attempts[0].error == "HTTP 503"
    assert detail.attempts[0].request is not None
    assert detail.attempts[0].request["body"] == '{"status":"shipped"}'
    assert detail.attempts[0].response == {
        "status": 503,
        "headers": {"Retry-After": "1"},
        "body": "busy",
    }
    as_json = json.loads(json.dumps(detail.to_dict()))
    assert as_json["template"]["body"] == '{"status":"shipped"}'
    assert as_json["delivery"]["state"] == "done"
    assert len(as_json["attempts"]) == 2


async def test_uncounted_result_keeps_attempts_and_status(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("d1"))
    await spool.claim_due(soon(), 10)
    await spool.record_attempt(
        result(
            "d1",
            S.CANCELLED,
            outcome="fail",
            number=0,  # as the runner writes it: no attempt, the last one's number (none yet)
            status=None,
            error="trigger 't1' was removed",
            counted=False,
        )
    )
    detail = await spool.get_delivery("d1")
    assert detail is not None
    assert (detail.summary.state, detail.summary.attempts) == (S.CANCELLED, 0)
    assert detail.summary.last_error == "trigger 't1' was removed"


async def test_record_attempt_for_a_purged_delivery_is_ignored(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("d1"))
    await spool.claim_due(soon(), 10)
    assert await spool.verbs.purge(["d1"]) == 1
    await spool.record_attempt(result("d1", S.DONE))
    assert await spool.get_delivery("d1") is None


async def test_record_attempt_checks_its_values(spool: Spool) -> None:
    with pytest.raises(ValueError, match="cannot record inflight"):
        await spool.record_attempt(result("d1", S.INFLIGHT))
    with pytest.raises(ValueError, match="unknown outcome"):
        await spool.record_attempt(result("d1", S.DONE, outcome="maybe"))


async def test_failed_delivery_retried_is_rendered_again(spool: Spool) -> None:
    await add(spool, "e1", new_delivery("d1", state=S.FAILED, body=None, render_error="boom"))
    assert await spool.verbs.retry(["d1"]) == 1
    (claimed,) = await spool.claim_due(soon(), 10)
    assert claimed.body is None
    assert await spool.set_rendered(
        "d1", b"<ok/>", "Shipped", None, format="xml", content_type="application/xml"
    )
    detail = await spool.get_delivery("d1")
    assert detail is not None
    assert (detail.body, detail.subject, detail.render_error) == (b"<ok/>", "Shipped", None)
    assert (detail.format, detail.content_type) == ("xml", "application/xml")
    assert detail.summary.state is S.INFLIGHT
