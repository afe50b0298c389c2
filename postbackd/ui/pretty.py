"""Text for people: times, durations, pretty-printed bodies and request-log values."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from xml.dom import minidom
from xml.parsers.expat import ExpatError

PRETTY_LIMIT = 256 * 1024
"""Bodies larger than this are shown as stored, not re-indented."""

MASK = "***"
_SENSITIVE = re.compile(r"authorization|cookie|token|secret|passw|signature|api[-_]?key", re.I)


def _utc(epoch: float | None) -> datetime | None:
    """The time, or None when there is none or it is no time at all: a shared database's rows
    may hold NaN, infinity or a year past 9999, and a page must still render."""
    if epoch is None or not math.isfinite(epoch):
        return None
    try:
        return datetime.fromtimestamp(epoch, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def timestamp(epoch: float | None) -> str:
    """``2026-05-01 10:03:07`` (UTC, as the whole UI shows times)."""
    moment = _utc(epoch)
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def iso(epoch: float | None) -> str:
    moment = _utc(epoch)
    return "" if moment is None else moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def relative(epoch: float | None, now: float | None = None) -> str:
    """``in 4 min`` / ``12 s ago``: how far a time is from now, roughly."""
    if _utc(epoch) is None:
        return ""
    assert epoch is not None
    delta = epoch - (time.time() if now is None else now)
    text = duration(abs(delta))
    return f"in {text}" if delta > 0 else f"{text} ago"


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}".replace(".0 ", " ")
    return f"{seconds:.1f} s".replace(".0 ", " ")


def pretty_body(body: bytes | str | None, format: str) -> str:
    """A JSON body re-indented, an XML body indented; anything else (or too big) as it is."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if len(text) > PRETTY_LIMIT:
        return text
    if format == "json":
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            return text
    if format == "xml":
        return _pretty_xml(text)
    return text


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def masked_headers(headers: Any) -> list[tuple[str, str]]:
    """Header pairs for display; secret-looking ones masked again, whatever the plugin did."""
    if isinstance(headers, Mapping):
        pairs = [(str(k), str(v)) for k, v in headers.items()]
    elif isinstance(headers, list):
        pairs = [(str(p[0]), str(p[1])) for p in headers if isinstance(p, list | tuple) and p]
    else:
        return []
    return [(name, MASK if _SENSITIVE.search(name) else value) for name, value in pairs]


def scalar(value: Any) -> str:
    """A request-log value on one line: text as is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _pretty_xml(text: str) -> str:
    try:
        document = minidom.parseString(text.encode("utf-8"))
    except (ExpatError, ValueError):
        return text
    pretty = document.toprettyxml(indent="  ")
    lines = [line for line in pretty.splitlines() if line.strip()]
    if not text.lstrip().startswith("<?xml"):
        lines = lines[1:]
    return "\n".join(lines)
