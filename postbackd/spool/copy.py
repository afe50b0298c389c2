"""`copy_spool`: move a stopped daemon's spool to another backend (``postbackd spool copy``).

Events, deliveries (state, schedule, attempts so far, payload), the request log and the
``[[sla]]`` timers (without their claims: nothing is firing in a stopped spool) are copied
row for row, in their original order, in one transaction on the target: all of it or nothing.
Both backends name their columns alike (`postbackd.spool.codec`), so a row needs no mapping but
its booleans (SQLite keeps integers). A delivery left in flight by a crash is copied as due
now. A target that already holds events or deliveries is refused: merging two spools could
send a delivery twice.
"""

from __future__ import annotations

from collections.abc import Sequence
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


@dataclass(frozen=True, slots=True)
class TableRows:
    """One table's rows to copy, in the order they were written."""

    table: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


@runtime_checkable
class CopyableSpool(Protocol):
    """What each backend offers `copy_spool` (not part of `Spool`: only this command needs it)."""

    async def dump(self, table: str, columns: str, order_by: str) -> list[tuple[Any, ...]]: ...

    async def load(self, tables: Sequence[TableRows]) -> None: ...


@dataclass(frozen=True, slots=True)
class CopyCounts:
    events: int
    deliveries: int
    attempts: int


async def copy_spool(source: Path | str, target: Path | str) -> CopyCounts:
    """Copy every row of `source` into the empty spool `target` (created when missing)."""
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
            tables = [
                _normalised(table, columns, await _copyable(src).dump(table, columns, order))
                for table, columns, order in TABLES
            ]
            await _copyable(dst).load(tables)
        finally:
            await dst.close()
    finally:
        await src.close()
    events, deliveries, attempts = (len(t.rows) for t in tables[:3])
    return CopyCounts(events, deliveries, attempts)


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
