"""`copy_spool`: move a stopped daemon's spool to another backend (``postbackd spool copy``).

Events, deliveries (state, schedule, attempts so far, payload), the request log and the
``[[sla]]`` timers (without their claims: nothing is firing in a stopped spool) are copied
row for row, in their original order, in one transaction on the target: all of it or nothing.
Rows are streamed in batches of `BATCH_ROWS`, read by keyset pagination (``WHERE (key) >
(last key) ORDER BY key LIMIT n``, the key a table's write order: ``seq``, ``id``, or
``started_at, id`` for the timers), so a spool of millions of rows is copied in bounded memory:
the target consumes a batch before the next is read.
Both backends name their columns alike (`postbackd.spool.codec`), so a row needs no mapping but
its booleans (SQLite keeps integers). A delivery left in flight by a crash is copied as due
now. A target that already holds events or deliveries is refused: merging two spools could
send a delivery twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from postbackd.spool.codec import redacted
from postbackd.spool.model import TIMER_COLUMNS, SpoolError

EVENT_COLUMNS = "id, type, customer, order_id, event_time, received_at, source, matched, body"
DELIVERY_COLUMNS = (
    "id, event_id, trigger_name, plugin, customer, event_type, order_id, format, content_type, "
    "subject, body, render_error, state, held_reason, attempts, ordered, created_at, "
    "next_attempt_at, updated_at, finished_at, last_status, last_error, destination"
)
ATTEMPT_COLUMNS = (
    "delivery_id, number, started_at, duration, outcome, status, error, request, response"
)
TABLES = (
    ("events", EVENT_COLUMNS, "seq"),
    ("deliveries", DELIVERY_COLUMNS, "seq"),
    ("attempts", ATTEMPT_COLUMNS, "id"),
    ("sla_timers", TIMER_COLUMNS, "started_at, id"),
)
BOOLEAN_COLUMNS = frozenset({"matched", "ordered"})
BATCH_ROWS = 2000
"""Rows read and written at a time: a few MB of payloads and request logs at most."""


@dataclass(frozen=True, slots=True)
class TableRows:
    """One table's rows to copy, in the order they were written."""

    table: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


@runtime_checkable
class CopyableSpool(Protocol):
    """What each backend offers `copy_spool` (not part of `Spool`: only this command needs it)."""

    async def dump_batch(
        self, table: str, columns: str, key: str, after: tuple[Any, ...] | None, limit: int
    ) -> list[tuple[Any, ...]]:
        """Up to `limit` rows of `table` whose `key` (one column or several) is above `after`
        (None: from the first), in key order, each as (*key, *columns)."""
        ...

    async def load_batches(self, batches: AsyncIterator[TableRows]) -> None:
        """Insert every batch `batches` yields, all in one transaction (none on an error)."""
        ...


@dataclass(frozen=True, slots=True)
class CopyCounts:
    events: int
    deliveries: int
    attempts: int


async def copy_spool(
    source: Path | str, target: Path | str, *, batch_rows: int = BATCH_ROWS
) -> CopyCounts:
    """Copy every row of `source` into the empty spool `target` (created when missing),
    `batch_rows` at a time."""
    from postbackd.spool import is_database_url, open_spool, spool_missing

    if spool_missing(source):
        raise SpoolError(f"spool {source} not found: give the path of an existing spool file")
    # a file must not be in use by its daemon (exclusive); a database is the operator's word
    src = await open_spool(source, exclusive=not is_database_url(source))
    try:
        dst = await open_spool(target)
        try:
            stats = await dst.stats()
            if stats.events or stats.deliveries:
                raise SpoolError(
                    f"spool {redacted(str(target))} already holds {stats.events} events and "
                    f"{stats.deliveries} deliveries: copy into an empty spool (a new file or "
                    "an empty database)"
                )
            counts = {table: 0 for table, _, _ in TABLES}
            await _copyable(dst).load_batches(_batches(_copyable(src), counts, batch_rows))
        finally:
            await dst.close()
    finally:
        await src.close()
    return CopyCounts(counts["events"], counts["deliveries"], counts["attempts"])


async def _batches(
    src: CopyableSpool, counts: dict[str, int], batch_rows: int
) -> AsyncIterator[TableRows]:
    """Each table's rows in write order, `batch_rows` at a time, counted into `counts`."""
    for table, columns, key in TABLES:
        width = len(key.split(","))
        after: tuple[Any, ...] | None = None
        while True:
            rows = await src.dump_batch(table, columns, key, after, batch_rows)
            if not rows:
                break
            after = tuple(rows[-1][:width])
            counts[table] = counts.get(table, 0) + len(rows)
            yield _normalised(table, columns, [row[width:] for row in rows])
            if len(rows) < batch_rows:
                break


def _copyable(spool: object) -> CopyableSpool:
    if not isinstance(spool, CopyableSpool):
        raise SpoolError(f"a {type(spool).__name__} cannot be copied")
    return spool


def _normalised(table: str, columns: str, rows: list[tuple[Any, ...]]) -> TableRows:
    names = tuple(name.strip() for name in columns.split(","))
    booleans = [i for i, name in enumerate(names) if name in BOOLEAN_COLUMNS]
    state = names.index("state") if "state" in names else None
    out = []
    for row in rows:
        values = list(row)
        for i in booleans:
            values[i] = bool(values[i])
        if state is not None and values[state] == "inflight":
            values[state] = "pending"  # no attempt runs on a stopped spool: due again
        out.append(tuple(values))
    return TableRows(table, names, out)
