"""Human units: durations ("5s", "30m", "1h30m") and sizes ("64MiB") in configuration, and
counted nouns in messages ("1 customer", "3 customers")."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?", re.IGNORECASE)
_SIZE_BYTES = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration such as ``"5s"``, ``"30m"``, ``"1h30m"``, ``"250ms"`` or ``"30d"``.

    A bare number is read as seconds. Raises ValueError with a message fit for a user.
    """
    if isinstance(text, bool):
        raise ValueError(f'expected a duration like "30s" or "5m", got {text!r}')
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"a duration cannot be negative: {text!r}")
        return float(text)
    value = text.strip()
    if not value:
        raise ValueError('expected a duration like "30s" or "5m", got an empty string')
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit (ms, s, m, h, d, w), "
            'e.g. "30s", "5m", "1h30m"'
        )
    return total


def parse_size(text: str | int) -> int:
    """Bytes in a size such as ``"1MiB"``, ``"64 MB"`` or a bare number of bytes."""
    if isinstance(text, bool):
        raise ValueError(f'expected a size like "1MiB", got {text!r}')
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative: {text!r}")
        return text
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f'invalid size {text!r}: use e.g. "512KiB", "1MiB", "64MB"')
    unit = (match.group(2) or "B").lower()
    return int(float(match.group(1)) * _SIZE_BYTES[unit])


def format_duration(seconds: float) -> str:
    """The shortest readable form of a duration, for logs and listings ("2h", "5m", "1.5s")."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.3g}s"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 delivery`, `3 deliveries`: `nouns` defaults to `noun` + "s"."""
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"
