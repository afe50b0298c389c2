"""Columns and row conversion every backend shares: one schema vocabulary, one set of values.

Both backends name their columns alike, so a row read by either becomes the same frozen value
(`postbackd.spool.model`); the request log's JSON and the listing cursor are encoded alike, so
`postbackd spool copy` moves them between backends unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from postbackd import jsoncodec
from postbackd.spool.model import AttemptRecord, DeliveryState, DeliverySummary, StoredDelivery

# The number of the last attempt in the request log: attempts are numbered by the log, so a
# `queue retry` (which resets the schedule counter `attempts`) does not restart them at 1.
LOGGED_ATTEMPTS = (
    "(SELECT coalesce(max(number), 0) FROM attempts WHERE attempts.delivery_id = deliveries.id)"
)
STORED_COLUMNS = (
    "id, event_id, trigger_name, plugin, customer, event_type, order_id, format, content_type, "
    "subject, body, render_error, state, attempts, ordered, created_at, next_attempt_at, seq, "
    "destination"
)
"""What a claim reads. Without the logged attempt number: as a column of ``UPDATE … RETURNING``
(or of a sorted claim) the subquery ran for every row considered, not per claimed row — 1 ms of
writer time per delivery. Claims fill it afterwards for what they took (`with_logged_attempts`)."""
SUMMARY_COLUMNS = (
    "id, event_id, order_id, customer, trigger_name, event_type, plugin, state, "
    f"{LOGGED_ATTEMPTS}, created_at, next_attempt_at, last_status, last_error, destination, "
    "held_reason, updated_at, finished_at"
)
SEQ_COLUMN = 17  # position of seq in STORED_COLUMNS
ATTEMPT_COLUMNS = "number, started_at, duration, outcome, status, error, request, response"


def stored_from_row(row: Sequence[Any]) -> StoredDelivery:
    values = list(row)
    values[12] = DeliveryState(values[12])
    values[14] = bool(values[14])
    return StoredDelivery(*values)


def with_logged_attempts(
    claimed: list[StoredDelivery], numbers: Mapping[str, int]
) -> list[StoredDelivery]:
    """`claimed` with each one's last logged attempt number (`numbers`: id → max(number), only
    for deliveries attempted before)."""
    return [replace(d, logged_attempts=numbers[d.id]) if d.id in numbers else d for d in claimed]


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


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    try:
        return int(cursor)
    except ValueError:
        raise ValueError(
            f"invalid cursor {cursor!r}: pass the next_cursor of a previous page"
        ) from None


def redacted(url: str) -> str:
    """The URL without its password, for messages (a literal password must not be logged)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
