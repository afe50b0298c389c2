"""The durable store of events, deliveries and attempts: SQLite in WAL mode, group-committed.

Callers live on the event loop; SQLite runs on two threads of the spool's own (see
`postbackd.spool.sqlite.threads`): every write is group-committed on the writer thread and a caller
hears back only after the COMMIT that holds its write, so a source acknowledges nothing that a
crash could lose. Reads run on a reader thread with its own connection.

The CLI opens the same file while the daemon runs. The first process to open a spool becomes
its *owner* (an advisory lock on ``<spool>.lock``): only the owner puts deliveries left
``inflight`` by a crash back to ``pending``, so a CLI command never steals the daemon's work.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from postbackd.events import Event
from postbackd.logs import get_logger
from postbackd.plugin import SpoolUnavailable
from postbackd.spool.codec import decode_cursor
from postbackd.spool.copy import TableRows
from postbackd.spool.model import (
    ID_MATCHES_SHOWN,
    MIN_ID_PREFIX,
    NO_FILTER,
    AttemptResult,
    DeliveryDetail,
    DeliveryState,
    DeliverySummary,
    ListFilter,
    NewDelivery,
    NodeBeat,
    SlaTimer,
    SpoolError,
    SpoolStats,
    StoredDelivery,
    SubmitOutcome,
    Throughput,
    TimerChange,
    TimerState,
    TriggerSync,
    choose_delivery_id,
    timer_changes_by_event,
)
from postbackd.spool.sqlite import browse, claim, reads, writes
from postbackd.spool.sqlite import timers as timer_sql
from postbackd.spool.sqlite.checkpoint import WRITER_AUTOCHECKPOINT, Checkpointer, truncate_log
from postbackd.spool.sqlite.errors import FreeSpaceGuard, storage_error
from postbackd.spool.sqlite.joined import WriteBatcher
from postbackd.spool.sqlite.lock import acquire_owner_lock
from postbackd.spool.sqlite.rows import id_list
from postbackd.spool.sqlite.schema import open_checkpointer, open_reader, open_writer
from postbackd.spool.sqlite.threads import ConnectionThread, Operation, WriterThread
from postbackd.spool.sqlite.verbs import SqliteVerbStore
from postbackd.spool.verbs import OperatorVerbs

log = get_logger("postbackd.spool.sqlite.store")

S = DeliveryState
NEW_STATES = frozenset({S.PENDING, S.HELD, S.FAILED})
RECORDED_STATES = frozenset({S.DONE, S.PENDING, S.DEAD, S.CANCELLED, S.FAILED})
IntakeRows = list[tuple[writes.EventRow, Sequence[NewDelivery]]]


class SqliteSpool:
    """Open with `await SqliteSpool.open(path)`; `await spool.close()` (or ``async with``) at the
    end. The operator's verbs are `spool.verbs`."""

    def __init__(
        self,
        path: Path,
        writer: WriterThread,
        reader: ConnectionThread,
        lock_fd: int | None,
        disk: FreeSpaceGuard,
        checkpointer: Checkpointer | None,
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._lock_fd = lock_fd
        self._disk = disk
        self._checkpointer = checkpointer
        self._closed = False
        self._browser: ConnectionThread | None = None
        self._browser_starting = asyncio.Lock()
        self._beat: NodeBeat | None = None  # the one node: the daemon that owns this file
        self.verbs = OperatorVerbs(SqliteVerbStore(self._write, self._truncate_log))
        # Writes that arrive while the writer is busy share one operation (see `joined`).
        writing_error = functools.partial(storage_error, path, writing=True)
        self._intake: WriteBatcher[IntakeRows, list[SubmitOutcome]] = WriteBatcher(
            self._write, writes.submit_requests, writing_error
        )
        self._outcomes: WriteBatcher[AttemptResult, bool] = WriteBatcher(
            lambda operation: self._write(operation, durable=False),
            writes.record_attempts,
            writing_error,
        )

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] | str = "FULL",
        min_free: int = 0,
        exclusive: bool = False,
    ) -> SqliteSpool:
        """Open (create, migrate) a spool.

        `exclusive=True` (the daemon) insists on owning it and raises `SpoolError` when another
        process keeps it; otherwise ownership is taken only if free (the CLI).
        """
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        path = Path(path)
        writer = WriterThread(
            "postbackd-spool-writer",
            lambda: open_writer(path, synchronous),
            lambda exc: storage_error(path, exc, writing=True),
            synchronous,
        )
        await writer.start()
        reader = ConnectionThread(
            "postbackd-spool-reader",
            lambda: open_reader(path),
            lambda exc: storage_error(path, exc, writing=False),
        )
        lock_fd: int | None = None
        try:
            lock_fd = await asyncio.to_thread(acquire_owner_lock, path, exclusive)
            if lock_fd is not None:
                recovered = await writer.call(writes.recover_inflight)
                if recovered:
                    log.warning(
                        "deliveries left in flight put back to pending",
                        spool=str(path),
                        count=recovered,
                    )
            await reader.start()
        except BaseException:
            await writer.stop()
            await reader.stop()
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        disk = FreeSpaceGuard(path, min_free)
        await disk.measure()
        checkpointer = None
        if exclusive:  # the daemon writes all day; a CLI command's few writes need no thread
            await writer.call(
                lambda conn: conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT}")
            )
            checkpointer = Checkpointer(lambda: open_checkpointer(path))
            checkpointer.start()
        return cls(path, writer, reader, lock_fd, disk, checkpointer)

    async def close(self) -> None:
        """Finish the queued writes, close both connections, join the threads."""
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:
            await self._checkpointer.stop()
        await self._writer.stop()
        await self._reader.stop()
        if self._browser is not None:
            await self._browser.stop()
        if self._lock_fd is not None:
            await asyncio.to_thread(os.close, self._lock_fd)
            self._lock_fd = None

    async def __aenter__(self) -> SqliteSpool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def commits(self) -> int:
        """Transactions the writer has committed (group commit: far fewer than writes)."""
        return self._writer.commits

    @property
    def closed(self) -> bool:
        """Closed at shutdown: writes are refused for good, not for now."""
        return self._closed

    @property
    def owner(self) -> bool:
        """Whether this process owns the spool (recovered it at open, holds its lock)."""
        return self._lock_fd is not None

    @property
    def available(self) -> bool:
        """A file is always there once open; a full disk shows as `SpoolUnavailable` on
        intake (min_free), not here."""
        return not self._closed

    def on_new_work(self, wake: Callable[[], None]) -> None:
        """Nothing to listen to: the daemon is the only process that delivers from this
        file, it wakes its own dispatcher on intake, and a CLI command's retry is seen at the
        dispatcher's next poll (within a second)."""

    # ------------------------------------------------------------------ intake

    async def submit(
        self, event: Event, deliveries: Sequence[NewDelivery], *, source: str
    ) -> SubmitOutcome:
        """Commit an event with its deliveries (nothing if the event id is known).

        Raises `SpoolUnavailable` when free disk is below `min_free` or the write fails.
        """
        (outcome,) = await self.submit_many([(event, deliveries)], source=source)
        return outcome

    async def submit_many(
        self,
        routed: Sequence[tuple[Event, Sequence[NewDelivery]]],
        *,
        source: str,
        timers: Sequence[TimerChange] = (),
    ) -> list[SubmitOutcome]:
        """`submit` for a batch, in one write: every event is stored, or none is.

        One operation rather than one per event — shared with the other batches that arrive
        meanwhile (`joined`): a batch of a hundred events costs the writer and the event loop
        one round trip, and the writer three statements for all the batches it holds.
        """
        rows: list[tuple[writes.EventRow, Sequence[NewDelivery]]] = []
        changes = timer_changes_by_event(timers)
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
                timers=changes.get(event.id, ()),
            )
            rows.append((row, deliveries))
        payload = sum(
            len(row.body) + sum(len(new.body or b"") for new in news) for row, news in rows
        )
        await self._disk.check(FreeSpaceGuard.write_cost(payload))
        self._ensure_open()
        try:
            outcomes: list[SubmitOutcome] = await self._intake.add(rows)
        except SpoolUnavailable:
            self._disk.remeasure_soon()
            raise
        return outcomes

    # ------------------------------------------------------------------ [[sla]] timers

    async def next_timer_due(self) -> float | None:
        due: float | None = await self._read(timer_sql.next_due)
        return due

    async def claim_due_timers(self, now: float, lease: float, limit: int) -> list[SlaTimer]:
        claimed: list[SlaTimer] = await self._write(
            lambda conn: timer_sql.claim_due(conn, now, lease, limit), durable=False
        )
        return claimed

    async def finish_timer(self, timer_id: str, state: TimerState, note: str) -> bool:
        now = time.time()
        finished: bool = await self._write(
            lambda conn: timer_sql.finish(conn, timer_id, state, note, now)
        )
        return finished

    async def list_timers(
        self, state: TimerState | None = "pending", limit: int = 100
    ) -> list[SlaTimer]:
        found: list[SlaTimer] = await self._read(
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
        """Mark up to `limit` due pending deliveries inflight and return them, oldest first.

        Skips ids in `exclude` and deliveries whose last known destination is in
        `exclude_destinations` (a delivery never attempted has none unless the router gave
        one). An ordered delivery behind an unfinished earlier one is not claimed: it is
        rescheduled to when that one may go (and woken when it ends).
        """
        if limit <= 0:
            return []
        ids, destinations = frozenset(exclude), frozenset(exclude_destinations)
        claimed: list[StoredDelivery] = await self._write(
            lambda conn: claim.claim_due(conn, now, limit, ids, destinations), durable=False
        )
        return claimed

    async def next_due_at(self, exclude_destinations: Collection[str] = ()) -> float | None:
        """The earliest next_attempt_at of pending deliveries (when the dispatcher should look),
        leaving out those bound for `exclude_destinations`."""
        excluded = frozenset(exclude_destinations)
        due: float | None = await self._read(lambda conn: claim.next_due_at(conn, excluded))
        return due

    def record_attempt(self, result: AttemptResult) -> asyncio.Future[bool]:
        """Log the attempt and move its delivery to `result.new_state`, in one write (shared
        with the other outcomes that arrive meanwhile: `joined.WriteBatcher`).

        Await the future: True once committed, False if the delivery is no longer in the spool
        (purged meanwhile). A future rather than a coroutine: every attempt awaits it under
        `asyncio.shield`, which would otherwise wrap it in a task of its own.
        """
        if result.new_state not in RECORDED_STATES:
            raise ValueError(f"delivery {result.delivery_id}: cannot record {result.new_state}")
        if result.outcome not in ("ok", "retry", "fail"):
            raise ValueError(f"delivery {result.delivery_id}: unknown outcome {result.outcome!r}")
        self._ensure_open()
        written = self._outcomes.add(result)
        written.add_done_callback(functools.partial(_note_gone, result.delivery_id))
        return written

    async def release_inflight(self, ids: Sequence[str], next_attempt_at: float) -> int:
        """inflight → pending at `next_attempt_at`, no attempt counted; returns how many."""
        if not ids:
            return 0
        batch = id_list(ids)
        count: int = await self._write(
            lambda conn: writes.release_inflight(conn, batch, next_attempt_at)
        )
        return count

    async def hold_inflight(self, delivery_id: str, reason: str) -> bool:
        """inflight → held in one write, no attempt counted (its trigger became inactive while
        it was claimed); False if it was no longer inflight."""
        held: bool = await self._write(lambda conn: writes.hold_inflight(conn, delivery_id, reason))
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
        """Store a re-render (body and subject, or the render error); the state is unchanged.

        A failed re-render ends with `record_attempt(new_state=FAILED, counted=False)`.
        """
        done: bool = await self._write(
            lambda conn: writes.set_rendered(
                conn, delivery_id, body, subject, render_error, format, content_type
            )
        )
        return done

    async def sync_triggers(
        self, active: Collection[str], inactive: Collection[str]
    ) -> TriggerSync:
        """After a (re)load: hold deliveries of inactive triggers, resume reactivated ones,
        cancel those whose trigger is gone."""
        on, off = list(active), list(inactive)
        sync: TriggerSync = await self._write(lambda conn: writes.sync_triggers(conn, on, off))
        return sync

    # ------------------------------------------------------------------ the one node

    async def heartbeat(self, beat: NodeBeat) -> None:
        """A SQLite spool has one node, the daemon that owns it: kept in memory, not stored."""
        self._beat = replace(beat, last_seen=time.time())

    async def live_nodes(self) -> list[NodeBeat]:
        """The daemon itself, once it has beaten; nobody else can share this file."""
        return [] if self._beat is None else [self._beat]

    async def leave_to_others(self, delivery_id: str, trigger: str) -> bool:
        """No other node could deliver it: the caller settles the delivery itself."""
        return False

    # ------------------------------------------------------------------ queries

    async def stats(self) -> SpoolStats:
        result: SpoolStats = await self._read(reads.stats)
        return result

    async def list_deliveries(
        self, filters: ListFilter = NO_FILTER, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[DeliverySummary], str | None]:
        """The request log newest first, `limit` per page; pass the returned cursor for the next
        page (ValueError for a cursor this spool did not give)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        after = decode_cursor(cursor)
        page, next_seq = await self._browse(
            lambda conn: browse.list_page(conn, filters, limit, after)
        )
        return page, None if next_seq is None else str(next_seq)

    async def throughput(self, minutes: int = 60, now: float | None = None) -> Throughput:
        """Deliveries finished per minute over the last `minutes` (the UI's overview)."""
        end = time.time() if now is None else now
        result: Throughput = await self._browse(
            lambda conn: browse.finished_per_minute(conn, end, minutes)
        )
        return result

    async def get_delivery(self, delivery_id: str) -> DeliveryDetail | None:
        detail: DeliveryDetail | None = await self._read(
            lambda conn: reads.get_delivery(conn, delivery_id)
        )
        return detail

    async def match_delivery_ids(self, given: str, limit: int = ID_MATCHES_SHOWN + 1) -> list[str]:
        """The delivery ids `given` (a whole id, or a prefix of `MIN_ID_PREFIX` or more
        characters) may stand for, in id order, at most `limit`."""
        ids: list[str] = await self._read(
            lambda conn: reads.ids_with_prefix(conn, given, MIN_ID_PREFIX, limit)
        )
        return ids

    async def resolve_delivery_id(self, given: str) -> str:
        """The one delivery id that `given` names: itself, or the one id it is a prefix of.

        Raises `UnknownDeliveryId`, or `AmbiguousDeliveryId` listing the ids it starts.
        """
        return choose_delivery_id(given, await self.match_delivery_ids(given))

    # ------------------------------------------------------------------ spool copy

    async def dump_batch(
        self, table: str, columns: str, key: str, after: tuple[Any, ...] | None, limit: int
    ) -> list[tuple[Any, ...]]:
        """Up to `limit` rows of `table` (a `postbackd.spool.copy` table) past `after`, in key
        order, each as (*key, *columns): one page of a keyset-paginated copy."""
        where = "" if after is None else f"WHERE ({key}) > ({', '.join('?' for _ in after)})"
        sql = f"SELECT {key}, {columns} FROM {table} {where} ORDER BY {key} LIMIT ?"
        rows: list[tuple[Any, ...]] = await self._read(
            lambda conn: conn.execute(sql, (*(after or ()), limit)).fetchall()
        )
        return rows

    async def load_batches(self, batches: AsyncIterator[TableRows]) -> None:
        """Insert copied rows, every batch in one transaction on the writer thread, which pulls
        the next batch from the event loop only once it has written the last."""
        loop = asyncio.get_running_loop()

        async def pull() -> TableRows | None:
            return await anext(batches, None)

        runs: list[BaseException | None] = []

        def insert(conn: sqlite3.Connection) -> None:
            # The writer runs an operation again after a ROLLBACK (see `threads`); a stream
            # cannot be read twice, so a second run fails the copy with the first one's error.
            if runs:
                raise runs[0] or SpoolError(
                    f"copy into {self.path} was rolled back and nothing was copied; run it again"
                )
            runs.append(None)
            try:
                self._insert_stream(conn, loop, pull)
            except BaseException as exc:
                runs[0] = exc
                raise

        await self._write(insert)

    @staticmethod
    def _insert_stream(
        conn: sqlite3.Connection,
        loop: asyncio.AbstractEventLoop,
        pull: Callable[[], Coroutine[Any, Any, TableRows | None]],
    ) -> None:
        while (rows := asyncio.run_coroutine_threadsafe(pull(), loop).result()) is not None:
            marks = ", ".join("?" for _ in rows.columns)
            conn.executemany(
                f"INSERT INTO {rows.table} ({', '.join(rows.columns)}) VALUES ({marks})",
                rows.rows,
            )

    async def previous_event(
        self, customer: str, order_id: str, before_event_id: str
    ) -> dict[str, Any] | None:
        """The order's previous stored event (see `Spool.previous_event`), on the reader thread."""
        envelope: dict[str, Any] | None = await self._read(
            lambda conn: reads.previous_event(conn, customer, order_id, before_event_id)
        )
        return envelope

    # ------------------------------------------------------------------ plumbing

    def _write(self, operation: Operation, *, durable: bool = True) -> asyncio.Future[Any]:
        """A write, group-committed; `durable=False` for claims and outcomes, which a power cut
        may undo without losing anything but an attempt's record (see `threads`)."""
        self._ensure_open()
        return self._writer.call(operation, durable=durable)

    async def _truncate_log(self) -> None:
        self._ensure_open()
        path = self.path
        await asyncio.to_thread(truncate_log, lambda: open_checkpointer(path), path)

    def _read(self, operation: Operation) -> asyncio.Future[Any]:
        self._ensure_open()
        return self._reader.call(operation)

    async def _browse(self, operation: Operation) -> Any:
        self._ensure_open()
        if self._browser is None:
            async with self._browser_starting:
                if self._browser is None:
                    path = self.path
                    thread = ConnectionThread(
                        "postbackd-spool-browser",
                        lambda: open_reader(path),
                        lambda exc: storage_error(path, exc, writing=False),
                    )
                    await thread.start()
                    self._browser = thread
        return await self._browser.call(operation)

    def _ensure_open(self) -> None:
        if self._closed:
            raise SpoolUnavailable(f"spool {self.path} is closed (postbackd is shutting down)")


def _note_gone(delivery_id: str, written: asyncio.Future[bool]) -> None:
    if not written.cancelled() and written.exception() is None and not written.result():
        log.info("attempt for a delivery no longer in the spool", delivery_id=delivery_id)
