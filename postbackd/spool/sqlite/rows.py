"""Id lists and WHERE-clause building for the SQLite spool's queries (rows: `spool.codec`)."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from postbackd.spool.model import DeliveryState, Selection, StoredDelivery

STORED_JSON = (
    "json_group_array(json_array(id, event_id, trigger_name, plugin, customer, event_type, "
    "order_id, format, content_type, subject, CASE WHEN body IS NULL THEN NULL ELSE hex(body) END, "
    "render_error, state, attempts, ordered, printf('%.17g', created_at), "
    "printf('%.17g', next_attempt_at), seq, destination))"
)
"""STORED_COLUMNS of many rows as ONE value (a JSON array; the body in hex, times exact):
fetched in one step, where each row of a result costs the writer thread a hand-over of the
interpreter lock (see `claim`)."""


def stored_from_json(values: list[Any]) -> StoredDelivery:
    """A row of `STORED_JSON`, decoded."""
    if values[10] is not None:
        values[10] = bytes.fromhex(values[10])
    values[12] = DeliveryState(values[12])
    values[14] = bool(values[14])
    values[15] = float(values[15])
    values[16] = float(values[16])
    return StoredDelivery(*values)


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
    for column, value in (
        ("destination", selection.destination),
        ("trigger_name", selection.trigger),
        ("order_id", selection.order),
        ("event_type", selection.event_type),
    ):
        if value is not None:
            terms.append(f"{column} = ?")
            params.append(value)
    if selection.since is not None:
        terms.append("created_at >= ?")
        params.append(selection.since)
    if selection.until is not None:
        terms.append("created_at < ?")
        params.append(selection.until)
    return (" AND ".join(terms) or "1"), params
