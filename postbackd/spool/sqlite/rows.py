"""Column lists, row → dataclass conversion and WHERE-clause building shared by spool queries."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from postbackd import jsoncodec
from postbackd.spool.model import (
    AttemptRecord,
    DeliveryState,
    DeliverySummary,
    Selection,
    StoredDelivery,
)

STORED_COLUMNS = (
    "id, event_id, trigger_name, plugin, customer, event_type, order_id, format, content_type, "
    "subject, body, render_error, state, attempts, ordered, created_at, next_attempt_at, seq, "
    "destination"
)
SUMMARY_COLUMNS = (
    "id, event_id, order_id, customer, trigger_name, event_type, plugin, state, attempts, "
    "created_at, next_attempt_at, last_status, last_error, destination, held_reason, updated_at, "
    "finished_at"
)
SEQ_COLUMN = 17  # position of seq in STORED_COLUMNS
STORED_JSON = (
    "json_group_array(json_array(id, event_id, trigger_name, plugin, customer, event_type, "
    "order_id, format, content_type, subject, CASE WHEN body IS NULL THEN NULL ELSE hex(body) END, "
    "render_error, state, attempts, ordered, printf('%.17g', created_at), "
    "printf('%.17g', next_attempt_at), seq, destination))"
)
"""STORED_COLUMNS of many rows as ONE value (a JSON array; the body in hex, times exact):
fetched in one step, where each row of a result costs the writer thread a hand-over of the
interpreter lock (see `claim`)."""
ATTEMPT_COLUMNS = "number, started_at, duration, outcome, status, error, request, response"


def stored_from_row(row: Sequence[Any]) -> StoredDelivery:
    values = list(row)
    values[12] = DeliveryState(values[12])
    values[14] = bool(values[14])
    return StoredDelivery(*values)


def stored_from_json(values: list[Any]) -> StoredDelivery:
    """A row of `STORED_JSON`, decoded."""
    if values[10] is not None:
        values[10] = bytes.fromhex(values[10])
    values[12] = DeliveryState(values[12])
    values[14] = bool(values[14])
    values[15] = float(values[15])
    values[16] = float(values[16])
    return StoredDelivery(*values)


def summary_from_row(row: Sequence[Any]) -> DeliverySummary:
    values = list(row)
    state = DeliveryState(values[7])
    values[7] = state
    if state is not DeliveryState.PENDING:
        values[10] = None  # a schedule only means something while pending
    return DeliverySummary(*values)


def attempt_from_row(row: Sequence[Any]) -> AttemptRecord:
    number, started_at, duration, outcome, status, error, request, response = row
    return AttemptRecord(
        number=number,
        started_at=started_at,
        duration=duration,
        outcome=outcome,
        status=status,
        error=error,
        request=None if request is None else json.loads(request),
        response=None if response is None else json.loads(response),
    )


def log_json(value: Any) -> str | None:
    """A request or response for the request log as JSON text; bytes become text."""
    if value is None:
        return None
    try:
        return jsoncodec.dumps_any_keys(dict(value), default=_json_default).decode()
    except (TypeError, ValueError):  # what orjson refuses (lone surrogates): as before
        return json.dumps(dict(value), ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if hasattr(value, "items"):
        return dict(value.items())
    return str(value)


def id_list(ids: Collection[str]) -> str:
    """Ids as one JSON array parameter, for ``IN (SELECT value FROM json_each(?))``."""
    return json.dumps(list(ids))


def selection_sql(selection: Selection) -> tuple[str, list[Any]]:
    """A WHERE clause (never empty) and its parameters for an operator verb's selection."""
    terms: list[str] = []
    params: list[Any] = []
    if selection.ids is not None:
        terms.append("id IN (SELECT value FROM json_each(?))")
        params.append(id_list(selection.ids))
    if selection.states:
        terms.append(f"state IN ({', '.join('?' for _ in selection.states)})")
        params.extend(str(state) for state in selection.states)
    if selection.customer is not None:
        terms.append("customer = ?")
        params.append(selection.customer)
    if selection.destination is not None:
        terms.append("destination = ?")
        params.append(selection.destination)
    return (" AND ".join(terms) or "1"), params


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    try:
        return int(cursor)
    except ValueError:
        raise ValueError(
            f"invalid cursor {cursor!r}: pass the next_cursor of a previous page"
        ) from None
