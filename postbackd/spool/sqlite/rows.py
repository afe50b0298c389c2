"""Id lists and WHERE-clause building for the SQLite spool's queries (rows: `spool.codec`)."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from postbackd.spool.model import Selection


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
