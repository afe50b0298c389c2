"""The spool in PostgreSQL: one database shared by a fleet of nodes (DESIGN §10).

Every node (daemon) and every CLI command pointed at the database sees and acts on the same
events, deliveries and request log. A daemon node (`daemon=True`) also:

- claims with a lease and renews it, every `lease / 3`, for everything it holds (claimed and not
  yet recorded or released), so a long attempt keeps its delivery and a dead node's run out;
- listens on `WORK_CHANNEL`, so a delivery committed, retried or unblocked on any node wakes
  its dispatcher at once (`on_new_work`) instead of at its next poll;
- rides out outages: while the database is unreachable, intake raises `SpoolUnavailable` (503),
  `available` is False (``/readyz`` 503), claims find nothing, outcomes are retried with
  backoff until written, and the pool reconnects by itself. Nothing here ever ends the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import asyncpg

from postbackd.events import Event
from postbackd.logs import get_logger
from postbackd.plugin import SpoolUnavailable
from postbackd.spool.codec import decode_cursor, redacted
from postbackd.spool.copy import TableRows
from postbackd.spool.model import (
    ID_MATCHES_SHOWN,
    MIN_ID_PREFIX,
    NO_FILTER,
    AttemptResult,
    BatchAttempt,
    DeliveryDetail,
    DeliveryState,
    DeliverySummary,
    ListFilter,
    NewBatch,
    NewDelivery,
    NodeBeat,
    OpenWindow,
    SlaTimer,
    SpoolError,
    SpoolStats,
    StoredBatch,
    StoredDelivery,
    SubmitOutcome,
    Throughput,
    TimerChange,
    TimerState,
    TriggerSync,
    choose_delivery_id,
    timer_changes_by_event,
)
from postbackd.spool.postgres import batches, claim, nodes, reads, writes
from postbackd.spool.postgres import timers as timer_sql
from postbackd.spool.postgres.schema import WORK_CHANNEL, migrate
from postbackd.spool.postgres.verbs import PostgresVerbStore
from postbackd.spool.verbs import OperatorVerbs

log = get_logger("postbackd.spool.postgres")

S = DeliveryState
NEW_STATES = frozenset({S.PENDING, S.HELD, S.FAILED})
RECORDED_STATES = frozenset({S.DONE, S.PENDING, S.DEAD, S.CANCELLED, S.FAILED})
POOL_SIZE = 10
CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 30.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
OUTCOME_BATCH = 256  # outcomes written in one transaction at most

UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown
    asyncpg.exceptions.CannotConnectNowError,  # the server is starting or stopping
)
"""Errors that mean "the database cannot be reached now", not "this write is wrong"."""

T = TypeVar("T")


class PostgresSpool:
    """Open with `await PostgresSpool.open(url, ...)`; `await spool.close()` at the end."""

    def __init__(
        self, url: str, pool: asyncpg.Pool, *, node: str, lease: float, daemon: bool
    ) -> None:
        self.url = url
        self.where = redacted(url)
        self.node = node
        self.lease = lease
        self._pool = pool
        self._daemon = daemon
        self._closed = False
        self._down_since: float | None = None
        self._held: set[str] = set()  # claimed by this node, not yet recorded or released
        self._delivers: list[str] | None = None  # the triggers this node delivers (sync_triggers)
        self._knows: list[str] = []  # and every trigger it has, inactive ones too
        self._beating = False  # this node has a heartbeat row, to delete when it stops
        self._wakers: list[Callable[[], None]] = []
        self._listener: asyncpg.Connection | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._outcomes: list[tuple[AttemptResult, asyncio.Future[bool]]] = []  # to record
        self._recorder: asyncio.Future[None] | None = None
        self.verbs = OperatorVerbs(PostgresVerbStore(self._transact))

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls, url: str, *, node: str | None = None, lease: float = 30.0, daemon: bool = False
    ) -> PostgresSpool:
        """Connect, migrate, and (a daemon node) start renewing leases and listening.

        A daemon node waits for an unreachable database, retrying with backoff (a fleet's
        nodes may start before their database); a CLI command fails at once with the reason.
        """
        where = redacted(url)
        backoff = BACKOFF_FIRST
        while True:
            try:
                pool = await asyncpg.create_pool(
                    url,
                    min_size=1,
                    max_size=POOL_SIZE,
                    timeout=CONNECT_TIMEOUT,
                    command_timeout=COMMAND_TIMEOUT,
                )
                break
            except asyncpg.InvalidAuthorizationSpecificationError as exc:
                raise SpoolError(
                    f"PostgreSQL spool {where} refused the login: {exc}; check the user and "
                    "password in [daemon] spool (or PGPASSWORD / ~/.pgpass)"
                ) from None
            except asyncpg.InvalidCatalogNameError as exc:
                raise SpoolError(
                    f"PostgreSQL spool {where}: {exc}; create the database (createdb) or fix "
                    "its name in [daemon] spool"
                ) from None
            except UNREACHABLE as exc:
                if not daemon:
                    raise SpoolError(
                        f"cannot reach the PostgreSQL spool {where}: {exc}; check that the "
                        "server runs and the host and port in [daemon] spool"
                    ) from None
                log.warning(
                    "PostgreSQL spool unreachable; retrying",
                    spool=where,
                    error=str(exc),
                    retry_in_s=backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        try:
            async with pool.acquire() as conn:
                await migrate(conn, where)
        except BaseException:
            await pool.close()
            raise
        spool = cls(url, pool, node=node or socket.gethostname(), lease=lease, daemon=daemon)
        if daemon:
            recovered = await spool._transact(lambda conn: writes.recover_own(conn, spool.node))
            await spool._transact(lambda conn: batches.release_own_batches(conn, spool.node))
            if recovered:
                log.warning(
                    "deliveries this node left in flight put back to pending",
                    spool=where,
                    node=spool.node,
                    count=recovered,
                )
            await spool._transact(lambda conn: timer_sql.release_own(conn, spool.node))
            spool._keeper = asyncio.create_task(spool._keep(), name="spool-keeper")
        return spool

    async def close(self) -> None:
        """Stop renewing and listening; outcomes still being retried are given up (their
        deliveries' leases run out and they go again)."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._recorder, self._keeper) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._beating:
            with contextlib.suppress(*UNREACHABLE, asyncpg.PostgresError):
                async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                    await nodes.leave(conn, self.node)
        if self._listener is not None:
            with contextlib.suppress(*UNREACHABLE):
                await self._listener.close(timeout=2)
        await self._pool.close()

    async def __aenter__(self) -> PostgresSpool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def owner(self) -> bool:
        """A daemon node hands work out; every node of the fleet does."""
        return self._daemon

    @property
    def closed(self) -> bool:
        """Closed at shutdown: writes are refused for good, not for now."""
        return self._closed

    @property
    def available(self) -> bool:
        """Whether the database answered the last time it was asked."""
        return self._down_since is None and not self._closed

    def on_new_work(self, wake: Callable[[], None]) -> None:
        """Call `wake` when any node commits work that may be due (NOTIFY), and when the
        connection comes back after an outage (notifications may have been missed)."""
        self._wakers.append(wake)

    # ------------------------------------------------------------------ intake

    async def submit(
        self, event: Event, deliveries: Sequence[NewDelivery], *, source: str
    ) -> SubmitOutcome:
        (outcome,) = await self.submit_many([(event, deliveries)], source=source)
        return outcome

    async def submit_many(
        self,
        routed: Sequence[tuple[Event, Sequence[NewDelivery]]],
        *,
        source: str,
        timers: Sequence[TimerChange] = (),
    ) -> list[SubmitOutcome]:
        """Commit events with their deliveries (and the ``[[sla]]`` timers they start or
        cancel) in one transaction: all stored, or none."""
        batch: list[tuple[writes.EventRow, Sequence[NewDelivery]]] = []
        for event, deliveries in routed:
            for new in deliveries:
                if new.state not in NEW_STATES:
                    raise ValueError(f"delivery {new.id}: a new delivery cannot be {new.state}")
            row = writes.EventRow(
                id=event.id,
                type=event.type,
                customer=event.customer,
                order_id=event.order_id,
                time=event.time,
                source=source,
                body=event.to_json(),
            )
            batch.append((row, deliveries))

        changes = timer_changes_by_event(timers)

        async def run(conn: asyncpg.Connection) -> list[SubmitOutcome]:
            await writes.lock_orders(conn, (new for _, news in batch for new in news))
            await timer_sql.lock_orders(conn, timers)
            outcomes = await writes.submit_batch(conn, batch)
            now = time.time()
            for (row, _), outcome in zip(batch, outcomes, strict=True):
                if not outcome.duplicate and row.id in changes:
                    await timer_sql.apply_timers(conn, changes[row.id], now)
            if any(not o.duplicate and o.deliveries for o in outcomes):
                await writes.notify_work(conn)
            return outcomes

        return await self._transact(run)

    # ------------------------------------------------------------------ [[sla]] timers

    async def next_timer_due(self) -> float | None:
        due: float | None = await self._transact(timer_sql.next_due)
        return due

    async def claim_due_timers(self, now: float, lease: float, limit: int) -> list[SlaTimer]:
        """Due timers for this node to fire (see `Spool.claim_due_timers`)."""
        claimed: list[SlaTimer] = await self._transact(
            lambda conn: timer_sql.claim_due(conn, now, self.node, lease, limit)
        )
        return claimed

    async def finish_timer(self, timer_id: str, state: TimerState, note: str) -> bool:
        now = time.time()
        finished: bool = await self._transact(
            lambda conn: timer_sql.finish(conn, timer_id, state, note, now)
        )
        return finished

    async def list_timers(
        self, state: TimerState | None = "pending", limit: int = 100
    ) -> list[SlaTimer]:
        found: list[SlaTimer] = await self._transact(
            lambda conn: timer_sql.list_timers(conn, state, limit)
        )
        return found

    # ------------------------------------------------------------------ dispatcher

    async def claim_due(
        self,
        now: float,
        limit: int,
        exclude: Collection[str] = (),
        *,
        exclude_destinations: Collection[str] = (),
    ) -> list[StoredDelivery]:
        """Claim up to `limit` due deliveries for this node with a lease; nothing while the
        database is unreachable (the dispatcher looks again at its next poll)."""
        if limit <= 0:
            return []

        async def run(conn: asyncpg.Connection) -> list[StoredDelivery]:
            expired = await claim.recover_expired(conn, now)
            if expired:
                log.warning(
                    "leases ran out: deliveries of nodes that stopped renewing them are due again",
                    count=len(expired),
                    nodes=sorted({str(node) for node in expired}),
                )
            return await claim.claim_due(
                conn,
                now,
                limit,
                exclude,
                exclude_destinations,
                self.node,
                self.lease,
                self._delivers,
            )

        try:
            claimed = await self._transact(run)
        except SpoolUnavailable:
            return []
        self._held.update(d.id for d in claimed)
        return claimed

    async def next_due_at(self, exclude_destinations: Collection[str] = ()) -> float | None:
        try:
            due: float | None = await self._transact(
                lambda conn: claim.next_due_at(conn, exclude_destinations, self._delivers)
            )
        except SpoolUnavailable:
            return None
        return due

    def record_attempt(self, result: AttemptResult) -> asyncio.Future[bool]:
        """Log the attempt and move its delivery on; retried with backoff while the database
        is unreachable, so an outcome is not lost to an outage.

        Outcomes that arrive while earlier ones are being written are joined into the next
        transaction (up to `OUTCOME_BATCH`): one commit — one WAL flush — for many attempts,
        as the SQLite spool's writer joins them.
        """
        if result.new_state not in RECORDED_STATES:
            raise ValueError(f"delivery {result.delivery_id}: cannot record {result.new_state}")
        if result.outcome not in ("ok", "retry", "fail"):
            raise ValueError(f"delivery {result.delivery_id}: unknown outcome {result.outcome!r}")
        self._ensure_open()
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._outcomes.append((result, future))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.ensure_future(self._record_queued())
        return future

    async def _record_queued(self) -> None:
        """Write queued outcomes, a batch per transaction, until none is left."""
        try:
            while self._outcomes:
                batch = self._outcomes[:OUTCOME_BATCH]
                del self._outcomes[:OUTCOME_BATCH]
                await self._record_until_written(batch)
        finally:  # cancelled at close: whoever waits hears it
            for _, future in self._outcomes:
                future.cancel()
            self._outcomes.clear()

    async def _record_until_written(
        self, batch: list[tuple[AttemptResult, asyncio.Future[bool]]]
    ) -> None:
        backoff = BACKOFF_FIRST
        while True:
            try:
                written = await self._transact(functools.partial(self._record_batch, batch))
            except SpoolUnavailable:
                if self._closed:
                    raise
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            except asyncio.CancelledError:  # closing: the leases run out, they go again
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:
                if len(batch) == 1:
                    ((_, future),) = batch
                    if not future.done():
                        future.set_exception(exc)
                    return
                for one in batch:  # a write refused: only its own outcome fails
                    await self._record_until_written([one])
                return
            for (result, future), done in zip(batch, written, strict=True):
                self._held.discard(result.delivery_id)
                if not done:
                    log.info(
                        "attempt for a delivery no longer in the spool",
                        delivery_id=result.delivery_id,
                    )
                if not future.done():
                    future.set_result(done)
            return

    async def _record_batch(
        self, batch: list[tuple[AttemptResult, asyncio.Future[bool]]], conn: asyncpg.Connection
    ) -> list[bool]:
        return [
            await writes.record_attempt(conn, result, self.node, self._delivers, self._knows)
            for result, _ in batch
        ]

    async def release_inflight(self, ids: Sequence[str], next_attempt_at: float) -> int:
        """inflight → pending at `next_attempt_at`; while the database is unreachable nothing
        (the leases run out and the deliveries go again)."""
        if not ids:
            return 0
        self._held.difference_update(ids)
        try:
            count: int = await self._transact(
                lambda conn: writes.release_inflight(conn, ids, next_attempt_at, self.node)
            )
        except SpoolUnavailable:
            return 0
        return count

    async def hold_inflight(self, delivery_id: str, reason: str) -> bool:
        self._held.discard(delivery_id)
        try:
            held: bool = await self._transact(
                lambda conn: writes.hold_inflight(conn, delivery_id, reason, self.node)
            )
        except SpoolUnavailable:
            return False
        return held

    async def set_rendered(
        self,
        delivery_id: str,
        body: bytes | None,
        subject: str | None,
        render_error: str | None,
        *,
        format: str | None = None,
        content_type: str | None = None,
    ) -> bool:
        done: bool = await self._transact(
            lambda conn: writes.set_rendered(
                conn, delivery_id, body, subject, render_error, format, content_type
            )
        )
        return done

    async def sync_triggers(
        self, active: Collection[str], inactive: Collection[str]
    ) -> TriggerSync:
        """After this node's (re)load: hold, resume and cancel for the whole fleet (what another
        live node delivers is neither held nor cancelled); from now on this node claims only
        deliveries of its `active` triggers and leaves the others' to the nodes that have them.
        """
        on, off = list(active), list(inactive)
        sync: TriggerSync = await self._transact(
            lambda conn: writes.sync_triggers(conn, on, off, self.node)
        )
        if self._daemon:
            self._delivers, self._knows = sorted(on), sorted({*on, *off})
        return sync

    # ------------------------------------------------------------------ the fleet's nodes

    async def heartbeat(self, beat: NodeBeat) -> None:
        """Record this node as live, running `beat`'s configuration (under this node's name)."""
        mine = replace(beat, node=self.node)
        await self._transact(lambda conn: nodes.beat(conn, mine))
        self._beating = True

    async def live_nodes(self) -> list[NodeBeat]:
        """Every node whose heartbeat is recent, by name."""
        found: list[NodeBeat] = await self._transact(nodes.live)
        return found

    async def leave_to_others(self, delivery_id: str, trigger: str) -> bool:
        """This node does not know `trigger` (any more): if another live node delivers it, put
        the claimed delivery back, due now, for that node, and return True."""

        async def run(conn: asyncpg.Connection) -> bool:
            if not await nodes.known_elsewhere(conn, self.node, trigger):
                return False
            await writes.release_inflight(conn, [delivery_id], time.time(), self.node)
            await writes.notify_work(conn)
            return True

        left: bool = await self._transact(run)
        if left:
            self._held.discard(delivery_id)
        return left

    # ------------------------------------------------------------------ queries

    async def stats(self) -> SpoolStats:
        result: SpoolStats = await self._transact(reads.stats)
        return result

    async def list_deliveries(
        self, filters: ListFilter = NO_FILTER, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[DeliverySummary], str | None]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        after = decode_cursor(cursor)
        page, next_seq = await self._transact(
            lambda conn: reads.list_page(conn, filters, limit, after)
        )
        return page, None if next_seq is None else str(next_seq)

    async def throughput(self, minutes: int = 60, now: float | None = None) -> Throughput:
        end = time.time() if now is None else now
        result: Throughput = await self._transact(
            lambda conn: reads.finished_per_minute(conn, end, minutes)
        )
        return result

    async def get_delivery(self, delivery_id: str) -> DeliveryDetail | None:
        detail: DeliveryDetail | None = await self._transact(
            lambda conn: reads.get_delivery(conn, delivery_id)
        )
        return detail

    async def previous_event(
        self, customer: str, order_id: str, before_event_id: str
    ) -> dict[str, Any] | None:
        """The order's previous stored event (see `Spool.previous_event`)."""
        envelope: dict[str, Any] | None = await self._transact(
            lambda conn: reads.previous_event(conn, customer, order_id, before_event_id)
        )
        return envelope

    async def match_delivery_ids(self, given: str, limit: int = ID_MATCHES_SHOWN + 1) -> list[str]:
        """The delivery ids `given` (a whole id, or a prefix of `MIN_ID_PREFIX` or more
        characters) may stand for, in id order, at most `limit`."""
        ids: list[str] = await self._transact(
            lambda conn: reads.ids_with_prefix(conn, given, MIN_ID_PREFIX, limit)
        )
        return ids

    async def resolve_delivery_id(self, given: str) -> str:
        """The one delivery id that `given` names: itself, or the one id it is a prefix of."""
        return choose_delivery_id(given, await self.match_delivery_ids(given))

    # ------------------------------------------------------------------ spool copy

    async def dump_batch(
        self, table: str, columns: str, key: str, after: tuple[Any, ...] | None, limit: int
    ) -> list[tuple[Any, ...]]:
        """Up to `limit` rows of `table` (a `postbackd.spool.copy` table) past `after`, in key
        order, each as (*key, *columns): one page of a keyset-paginated copy."""
        values = () if after is None else after
        marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        where = "" if after is None else f"WHERE ({key}) > ({marks})"
        sql = (
            f"SELECT {key}, {columns} FROM {table} {where} ORDER BY {key} LIMIT ${len(values) + 1}"
        )
        rows = await self._transact(lambda conn: conn.fetch(sql, *values, limit))
        return [tuple(row.values()) for row in rows]

    async def load_batches(self, batches: AsyncIterator[TableRows]) -> None:
        """COPY each batch in as it comes, all of them in one transaction."""

        async def insert(conn: asyncpg.Connection) -> None:
            async for rows in batches:
                await conn.copy_records_to_table(
                    rows.table, records=rows.rows, columns=list(rows.columns)
                )

        await self._transact(insert)

    # ------------------------------------------------------------------ shipment files

    async def closed_windows(self, now: float, limit: int = 0) -> list[OpenWindow]:
        """Batch windows that ended by `now` with deliveries not yet in a file; none while
        the database is unreachable (the batcher looks again)."""
        try:
            return await self._transact(lambda conn: batches.closed_windows(conn, now, limit))
        except SpoolUnavailable:
            return []

    async def seal_batch(self, batch: NewBatch) -> bool:
        """Store a shipment file with its deliveries bound to it, in one transaction; False
        (nothing stored) when one changed meanwhile or another node stored the file."""
        try:
            return await self._transact(lambda conn: batches.seal_batch(conn, batch))
        except batches.SealConflict:
            return False

    async def claim_batches(self, now: float, limit: int, lease: float) -> list[StoredBatch]:
        """Take up to `limit` due shipment files for this node with a lease."""
        try:
            return await self._transact(
                lambda conn: batches.claim_batches(conn, now, limit, self.node, lease)
            )
        except SpoolUnavailable:
            return []

    async def next_batch_due(self) -> float | None:
        """When a window next closes or a file is next due (None: nothing waits)."""
        try:
            return await self._transact(batches.next_batch_due)
        except SpoolUnavailable:
            return None

    async def record_batch_attempt(self, result: BatchAttempt) -> bool:
        """Record an attempt at a file for the file and each of its deliveries."""
        return await self._transact(
            lambda conn: batches.record_batch_attempt(conn, result, self.node)
        )

    # ------------------------------------------------------------------ plumbing

    async def _transact(self, operation: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `operation` in one transaction on a pooled connection; an unreachable database
        becomes `SpoolUnavailable` (and `available` False until it answers again)."""
        self._ensure_open()
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
                result = await operation(conn)
        except UNREACHABLE as exc:
            self._went_down(exc)
            raise SpoolUnavailable(
                f"PostgreSQL spool {self.where} is unreachable ({exc or type(exc).__name__}); "
                "postbackd reconnects by itself: send again later"
            ) from None
        self._came_back()
        return result

    def _went_down(self, exc: BaseException) -> None:
        if self._down_since is None and not self._closed:
            self._down_since = time.monotonic()
            log.error(
                "PostgreSQL spool unreachable: intake answers 503 and outcomes are kept until "
                "it is back",
                spool=self.where,
                error=str(exc) or type(exc).__name__,
            )

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.info(
                "PostgreSQL spool reachable again",
                spool=self.where,
                down_s=round(time.monotonic() - self._down_since, 1),
            )
            self._down_since = None
            self._wake()

    def _wake(self) -> None:
        for wake in self._wakers:
            wake()

    def _notified(self, *_: Any) -> None:
        self._wake()

    async def _keep(self) -> None:
        """A daemon node's upkeep: renew its leases, keep its LISTEN connection, notice the
        database coming back even when nothing else asks it."""
        interval = max(0.2, min(self.lease / 3, 10.0))
        backoff = BACKOFF_FIRST
        while True:
            try:
                if self._listener is None or self._listener.is_closed():
                    self._listener = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)
                    await self._listener.add_listener(WORK_CHANNEL, self._notified)
                    self._wake()  # notifications sent while it was not listening are lost
                await self._transact(functools.partial(self._renew, list(self._held)))
                backoff = BACKOFF_FIRST
                await asyncio.sleep(interval)
            except (SpoolUnavailable, *UNREACHABLE) as exc:  # type: ignore[misc]
                if not isinstance(exc, SpoolUnavailable):
                    self._went_down(exc)
                if self._listener is not None:
                    self._listener.terminate()
                    self._listener = None
                await asyncio.sleep(min(backoff, interval))
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _renew(self, held: list[str], conn: asyncpg.Connection) -> int:
        return await writes.renew_leases(conn, held, self.node, self.lease)

    def _ensure_open(self) -> None:
        if self._closed:
            raise SpoolUnavailable(f"spool {self.where} is closed (postbackd is shutting down)")
