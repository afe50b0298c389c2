"""Example events, one per canonical event type, as an order platform sends them, and one per
type of the daemon's own alerts (``postbackd.*``: `postbackd.alerts`).

They are what `postbackd samples` prints, what `postbackd render` uses when no event file is
given, and what `postbackd check` renders every template against. The files ship inside the
package (``order.shipped.json`` …), so they work from an installed wheel too.
"""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from typing import Any

from postbackd.events import CANONICAL_TYPES, SYSTEM_TYPES, Event, canonical_type, parse_event


class UnknownSample(KeyError):
    """No sample for the asked type; the message lists the types there are.

    A KeyError, as for a missing key, but its text is the plain message (KeyError would quote it).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.message = (
            f"no sample event of type {name!r}; samples exist for: {', '.join(sample_types())}"
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def sample_types() -> list[str]:
    """The event types that have a sample: the canonical types in their order, then the alerts."""
    folder = resources.files(__name__)
    return [
        name
        for name in (*CANONICAL_TYPES, *SYSTEM_TYPES)
        if folder.joinpath(f"{name}.json").is_file()
    ]


def load_sample(type_or_alias: str) -> dict[str, Any]:
    """The raw envelope of a sample (a fresh copy): by canonical type or alias."""
    name = canonical_type(type_or_alias)
    if name not in sample_types():
        raise UnknownSample(type_or_alias)
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    value: dict[str, Any] = json.loads(text)
    return value


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def fresh_event_id(now: float | None = None) -> str:
    """A new event id in the samples' style: ``evt_`` and a ULID (48 bits of milliseconds, 80
    random bits, Crockford base32), so ids sort by creation time and never repeat."""
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    digits = [_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5)]
    return "evt_" + "".join(digits)


def sample_event(type_or_alias: str) -> Event:
    """A sample as a validated Event, exactly as a source would have produced it."""
    return parse_event(load_sample(type_or_alias))
