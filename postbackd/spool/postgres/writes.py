"""The PostgreSQL spool's writes: each function runs inside a transaction its caller opened.

Semantics are the SQLite spool's (`postbackd.spool.sqlite.writes`); what differs is what a
fleet needs: intake serialises the deliveries of one (trigger, order) with an advisory lock so
their `seq` follows the order their events were committed in whatever node took them, and an
outcome never overrides a claim another live node holds now.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from postbackd.spool.codec import log_json
from postbackd.spool.model import (
    FINAL_STATES,
    TRIGGER_INACTIVE,
    AttemptResult,
    DeliveryState,
    NewDelivery,
    SubmitOutcome,
    TriggerSync,
)
from postbackd.spool.postgres import nodes
from postbackd.spool.postgres.schema import DB_NOW, WORK_CHANNEL

S = DeliveryState


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event ready to insert (serialised on the caller's side)."""

    id: str
    type: str
    customer: str
    order_id: str | None
    time: str
    source: str
    body: bytes


def order_key(trigger: str, order_id: str) -> str:
    """The advisory lock name of one (trigger, order): hashed by the database to a bigint."""
    return f"{trigger}\x1f{order_id}"


async def lock_orders(conn: asyncpg.Connection, deliveries: Iterable[NewDelivery]) -> None:
    """Serialise intake (and backfill) per (trigger, order) for ordered and superseding
    deliveries.

    Taken before any delivery is inserted, so a later status gets a later `seq` than an
    earlier one committed by another node, and a claim never sees the later one without the
    earlier. Sorted: two nodes locking the same orders cannot deadlock.
    """
    keys = sorted(
        {
            order_key(new.trigger, new.order_id)
            for new in deliveries
            if (new.ordered or new.supersede) and new.order_id is not None
        }
    )
    for key in keys:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)


async def submit_batch(
    conn: asyncpg.Connection, batch: Sequence[tuple[EventRow, Sequence[NewDelivery]]]
) -> list[SubmitOutcome]:
    """Store a batch of events with their deliveries in two statements: every event in one
    INSERT … SELECT FROM unnest (known ids skipped), every delivery of the new ones in one
    pipelined executemany. A round trip per event made intake the PostgreSQL node's limit.

    A batch with a superseding delivery goes event by event (`submit`): a later event's
    supersede must see the deliveries of an earlier one of the same batch.
    """
    if any(new.supersede for _, news in batch for new in news):
        return [await submit(conn, event, news) for event, news in batch]
    now = time.time()
    inserted = await conn.fetch(
        "INSERT INTO events (id, type, customer, order_id, event_time, received_at, source, "
        "matched, body) SELECT i, t, c, o, e, $6, s, m, b FROM unnest($1::text[], $2::text[], "
        "$3::text[], $4::text[], $5::text[], $7::text[], $8::boolean[], $9::bytea[]) "
        "AS u(i, t, c, o, e, s, m, b) ON CONFLICT (id) DO NOTHING RETURNING id",
        [event.id for event, _ in batch],
        [event.type for event, _ in batch],
        [event.customer for event, _ in batch],
        [event.order_id for event, _ in batch],
        [event.time for event, _ in batch],
        now,
        [event.source for event, _ in batch],
        [bool(news) for _, news in batch],
        [event.body for event, _ in batch],
    )
    new_ids = {row["id"] for row in inserted}
    outcomes: list[SubmitOutcome] = []
    rows: list[tuple[object, ...]] = []
    for event, news in batch:
        if event.id not in new_ids:  # stored before, or earlier in this batch
            outcomes.append(SubmitOutcome(event.id, duplicate=True, deliveries=0))
            continue
        new_ids.discard(event.id)
        outcomes.append(SubmitOutcome(event.id, False, len(news), 0))
        rows.extend(delivery_row(event.id, new, now) for new in news)
    if rows:
        await conn.executemany(INSERT_DELIVERY, rows)
    return outcomes


INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, event_id, trigger_name, plugin, customer, event_type, "
    "order_id, format, content_type, subject, body, render_error, state, held_reason, "
    "ordered, created_at, next_attempt_at, updated_at, finished_at, last_error, "
    "destination, batch_window) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
    "$12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
)
"""The one statement that stores a new delivery, its parameters from `delivery_row`: run
once by `insert_delivery`, or pipelined over many rows by `submit_batch`. An id already
stored fails it (and with it the intake transaction: the batch is stored whole or not at
all), unless the caller asks `insert_delivery` to skip it."""


def delivery_row(event_id: str, new: NewDelivery, now: float) -> tuple[object, ...]:
    """The parameters of `INSERT_DELIVERY` for one new delivery of `event_id`."""
    failed = new.state is S.FAILED
    return (
        new.id,
        event_id,
        new.trigger,
        new.plugin,
        new.customer,
        new.event_type,
        new.order_id,
        new.format,
        new.content_type,
        new.subject,
        new.body,
        new.render_error,
        str(new.state),
        new.held_reason,
        new.ordered,
        now,
        now if new.next_attempt_at is None else new.next_attempt_at,  # a batch window
        now,
        now if failed else None,
        new.render_error if failed else None,
        new.destination,
        new.batch_window,
    )


@dataclass(frozen=True, slots=True)
class Inserted:
    """What `insert_delivery` did: whether it stored the row (False only with `skip_stored`,
    for an id already there) and how many older statuses it superseded."""

    stored: bool
    superseded: int


async def insert_delivery(
    conn: asyncpg.Connection,
    event_id: str,
    new: NewDelivery,
    now: float,
    *,
    skip_stored: bool = False,
) -> Inserted:
    """Store one new delivery of `event_id` (its `supersede` first: the order's older pending
    statuses of the trigger cancelled).

    Intake (`submit`) and backfill (`verbs.add_deliveries`) both come through here, so the
    supersede rule is the same for both; `submit_batch` pipelines the same statement for a
    batch that supersedes nothing. `skip_stored` is backfill's: it looked the id up first,
    but another node backfilling the same events may commit it in between (the advisory
    locks serialise only ordered and superseding deliveries); that row is this very delivery
    (`router.delivery_id`), so it is left as it is rather than failing the transaction."""
    superseded = 0
    if new.supersede and new.order_id is not None and new.state is not S.FAILED:
        superseded = row_count(
            await conn.execute(
                "UPDATE deliveries SET state = 'cancelled', last_error = $1, finished_at = $2, "
                "updated_at = $2 WHERE order_id = $3 AND trigger_name = $4 AND state = 'pending'",
                f"superseded by {new.id}",
                now,
                new.order_id,
                new.trigger,
            )
        )
    conflict = " ON CONFLICT (id) DO NOTHING" if skip_stored else ""
    status = await conn.execute(INSERT_DELIVERY + conflict, *delivery_row(event_id, new, now))
    return Inserted(stored=row_count(status) == 1, superseded=superseded)


async def submit(
    conn: asyncpg.Connection, event: EventRow, deliveries: Sequence[NewDelivery]
) -> SubmitOutcome:
    """Store an event and its deliveries; nothing at all if the event id is already stored."""
    now = time.time()
    inserted = await conn.fetchval(
        "INSERT INTO events (id, type, customer, order_id, event_time, received_at, source, "
        "matched, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        "ON CONFLICT (id) DO NOTHING RETURNING seq",
        event.id,
        event.type,
        event.customer,
        event.order_id,
        event.time,
        now,
        event.source,
        bool(deliveries),
        event.body,
    )
    if inserted is None:
        return SubmitOutcome(event.id, duplicate=True, deliveries=0)
    superseded = 0
    for new in deliveries:
        superseded += (await insert_delivery(conn, event.id, new, now)).superseded
    return SubmitOutcome(event.id, False, len(deliveries), superseded)


async def notify_work(conn: asyncpg.Connection) -> None:
    """Wake idle nodes when this transaction commits (NOTIFY is delivered at COMMIT)."""
    await conn.execute(f"NOTIFY {WORK_CHANNEL}")


async def recover_own(conn: asyncpg.Connection, node: str) -> int:
    """A node starting again: what it left in flight is due again now (a crash or kill)."""
    now = time.time()
    return row_count(
        await conn.execute(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = $1, updated_at = $1, "
            "node = NULL, lease_until = NULL WHERE state = 'inflight' AND node = $2",
            now,
            node,
        )
    )


async def record_attempt(
    conn: asyncpg.Connection,
    result: AttemptResult,
    node: str,
    delivers: Collection[str] | None = None,
    knows: Collection[str] = (),
) -> bool:
    """Log an attempt and move its delivery on; False if the delivery is gone (purged).

    When another live node holds the delivery now (this node's lease ran out and it was claimed
    again), the attempt is logged but the state is left to the node that holds it. An attempt
    that began before a reload removed or deactivated its trigger on this node (`delivers`: the
    triggers it delivers now, `knows`: all it has) and is to be retried is settled as
    `sync_triggers` would have settled it, had it been pending then (nobody may claim it now).
    """
    now = time.time()
    final = result.new_state in FINAL_STATES
    row = await conn.fetchrow(
        "UPDATE deliveries SET state = $1, attempts = attempts + $2, "
        "next_attempt_at = coalesce($3, next_attempt_at), "
        "last_status = CASE WHEN $4 THEN $5 ELSE last_status END, last_error = $6, "
        "destination = coalesce($7, destination), updated_at = $8, finished_at = $9, "
        "held_reason = NULL, node = NULL, lease_until = NULL WHERE id = $10 "
        "AND NOT (state = 'inflight' "
        f"AND coalesce(node <> $11 AND lease_until > {DB_NOW}, false)) "
        "RETURNING seq, ordered, order_id, trigger_name",
        str(result.new_state),
        int(result.counted),
        result.next_attempt_at,
        result.counted,
        result.status,
        result.error,
        result.destination,
        now,
        now if final else None,
        result.delivery_id,
        node,
    )
    if row is None and not await conn.fetchval(
        "SELECT 1 FROM deliveries WHERE id = $1", result.delivery_id
    ):
        return False
    await conn.execute(
        "INSERT INTO attempts (delivery_id, number, started_at, duration, outcome, status, "
        "error, request, response, node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        result.delivery_id,
        result.number,
        result.started_at,
        result.duration,
        result.outcome,
        result.status,
        result.error,
        log_json(result.request),
        log_json(result.response),
        node,
    )
    if row is not None and final and row["ordered"] and row["order_id"] is not None:
        await wake_successor(conn, row["order_id"], row["trigger_name"], row["seq"], now)
    if (
        row is not None
        and result.new_state is S.PENDING
        and delivers is not None
        and row["trigger_name"] not in delivers
    ):
        await _settle_skew(conn, row["trigger_name"], row["seq"], node, knows, now)
    return True


async def _settle_skew(
    conn: asyncpg.Connection,
    trigger: str,
    seq: int,
    node: str,
    knows: Collection[str],
    now: float,
) -> None:
    """A pending delivery of a trigger this node does not deliver: left pending for a live node
    that delivers it, held while some node has it inactive, cancelled when none has it."""
    others_known, others_active = await nodes.others_triggers(conn, node)
    if trigger in others_active:
        return
    if trigger in knows or trigger in others_known:
        await conn.execute(
            "UPDATE deliveries SET state = 'held', held_reason = $1, updated_at = $2 "
            "WHERE seq = $3 AND state = 'pending'",
            TRIGGER_INACTIVE,
            now,
            seq,
        )
        return
    await conn.execute(
        "UPDATE deliveries SET state = 'cancelled', finished_at = $1, updated_at = $1, "
        "last_error = 'trigger ' || trigger_name || ' was removed from the configuration' "
        "WHERE seq = $2 AND state = 'pending'",
        now,
        seq,
    )


async def wake_successor(
    conn: asyncpg.Connection, order_id: str, trigger: str, seq: int, now: float
) -> None:
    """An ordered delivery ended: the next one of its order need not wait for its recheck, on
    whichever node claims it."""
    status = await conn.execute(
        "UPDATE deliveries SET next_attempt_at = $1, updated_at = $1 WHERE seq = ("
        "SELECT seq FROM deliveries WHERE order_id = $2 AND trigger_name = $3 AND seq > $4 "
        "AND state = 'pending' ORDER BY seq LIMIT 1) AND next_attempt_at > $1",
        now,
        order_id,
        trigger,
        seq,
    )
    if row_count(status):
        await notify_work(conn)


async def release_inflight(
    conn: asyncpg.Connection, ids: Sequence[str], next_attempt_at: float, node: str
) -> int:
    return row_count(
        await conn.execute(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = $1, updated_at = $2, "
            "node = NULL, lease_until = NULL "
            "WHERE id = ANY($3::text[]) AND state = 'inflight' AND node = $4",
            next_attempt_at,
            time.time(),
            list(ids),
            node,
        )
    )


async def hold_inflight(conn: asyncpg.Connection, delivery_id: str, reason: str, node: str) -> bool:
    status = await conn.execute(
        "UPDATE deliveries SET state = 'held', held_reason = $1, updated_at = $2, node = NULL, "
        "lease_until = NULL WHERE id = $3 AND state = 'inflight' AND node = $4",
        reason,
        time.time(),
        delivery_id,
        node,
    )
    return row_count(status) == 1


async def renew_leases(
    conn: asyncpg.Connection, ids: Sequence[str], node: str, lease: float
) -> int:
    """Push back the lease of what this node holds: its attempts may run longer than a lease."""
    return row_count(
        await conn.execute(
            f"UPDATE deliveries SET lease_until = {DB_NOW} + $1 "
            "WHERE id = ANY($2::text[]) AND state = 'inflight' AND node = $3",
            lease,
            list(ids),
            node,
        )
    )


async def set_rendered(
    conn: asyncpg.Connection,
    delivery_id: str,
    body: bytes | None,
    subject: str | None,
    render_error: str | None,
    format: str | None,
    content_type: str | None,
) -> bool:
    status = await conn.execute(
        "UPDATE deliveries SET body = $1, subject = $2, render_error = $3, "
        "format = coalesce($4, format), content_type = coalesce($5, content_type), "
        "updated_at = $6 WHERE id = $7",
        body,
        subject,
        render_error,
        format,
        content_type,
        time.time(),
        delivery_id,
    )
    return row_count(status) > 0


async def sync_triggers(
    conn: asyncpg.Connection, active: list[str], inactive: list[str], node: str
) -> TriggerSync:
    """Hold the pending deliveries of inactive triggers, resume reactivated ones, cancel those
    of triggers that are gone (each statement through the trigger index) — for the fleet.

    `active` and `inactive` are `node`'s triggers; the other live nodes' heartbeats count as
    much: a trigger another live node delivers is not held, and one any live node knows is not
    cancelled (configuration skew never cancels work, DESIGN §10).
    """
    now = time.time()
    others_known, others_active = await nodes.others_triggers(conn, node)
    delivered = {*active, *others_active}
    inactive = [name for name in inactive if name not in delivered]
    active = sorted(delivered)
    known = sorted({*active, *inactive, *others_known})
    held = row_count(
        await conn.execute(
            "UPDATE deliveries SET state = 'held', held_reason = $1, updated_at = $2 "
            "WHERE trigger_name = ANY($3::text[]) AND state = 'pending'",
            TRIGGER_INACTIVE,
            now,
            inactive,
        )
    )
    resumed = row_count(
        await conn.execute(
            "UPDATE deliveries SET state = 'pending', held_reason = NULL, updated_at = $1 "
            "WHERE state = 'held' AND held_reason = $2 AND trigger_name = ANY($3::text[])",
            now,
            TRIGGER_INACTIVE,
            active,
        )
    )
    cancelled = row_count(
        await conn.execute(
            "UPDATE deliveries SET state = 'cancelled', held_reason = NULL, finished_at = $1, "
            "updated_at = $1, last_error = 'trigger ' || trigger_name || "
            "' was removed from the configuration' "
            "WHERE state IN ('pending', 'held') AND trigger_name <> ALL($2::text[])",
            now,
            known,
        )
    )
    if resumed:
        await notify_work(conn)
    return TriggerSync(held=held, resumed=resumed, cancelled=cancelled)


def row_count(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3`` or ``DELETE 0``."""
    return int(status.rsplit(" ", 1)[-1])
