"""One JSON codec for the hot path: orjson when installed (the `speedups` extra), else stdlib.

Both codecs take and refuse the same documents (DESIGN §9: hostile bytes are a 400 with or
without the speed-ups). orjson is strict RFC 8259; the stdlib fallback is made as strict:

- ``NaN``, ``Infinity``, ``-Infinity`` are refused (json takes them by default);
- a number that does not fit a double (``1e999``, a 400-digit integer) is refused, and an
  integer outside the 64-bit range becomes a float, as orjson does;
- a lone surrogate escape (``"\\ud800"``) is refused: UTF-8 cannot carry it, so an event holding
  one could be neither stored nor sent.

Nesting is limited by each parser (about 1000 levels) and, for events, by `events.MAX_DEPTH`.
``POSTBACKD_JSON_CODEC=stdlib`` forces the fallback even when orjson is installed (tests run the
daemon both ways with it).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from typing import Any

Default = Callable[[Any], Any] | None

_INT_MIN, _INT_END = -(2**63), 2**64  # orjson keeps integers in [i64 min, u64 max] exact
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (RFC 8259 has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range for a double")
    return value


def _integer(text: str) -> int | float:
    if len(text) <= 20:
        value = int(text)
        if _INT_MIN <= value < _INT_END:
            return value
    return _finite_float(text)


_STRICT_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_integer
)


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded document holds a string (or key) that UTF-8 cannot encode."""
    pending = [value]
    while pending:
        node = pending.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(node, dict):
            pending.extend(node.keys())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return False


def stdlib_loads(data: bytes | str) -> Any:
    """Parse JSON with the standard library, as strictly as orjson; ValueError on bad input."""
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    try:
        value = _STRICT_DECODER.decode(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    # Walking the document costs a pass; only a text with a surrogate escape can need it.
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise ValueError("a string holds a lone surrogate escape (\\ud800-\\udfff unpaired)")
    return value


def stdlib_dumps(value: Any, *, default: Default = None) -> bytes:
    """Compact UTF-8 JSON bytes; `default` turns a value JSON lacks into one it has."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default)
    return text.encode()


def stdlib_dumps_any_keys(value: Any, *, default: Default = None) -> bytes:
    """`dumps` that also takes keys other than plain str (header names are `istr`)."""
    return stdlib_dumps(value, default=default)


try:  # pragma: no cover - depends on the environment
    if os.environ.get("POSTBACKD_JSON_CODEC", "").lower() == "stdlib":
        raise ImportError("POSTBACKD_JSON_CODEC=stdlib")
    import orjson

    def loads(data: bytes | str) -> Any:
        """Parse JSON; raises ValueError on bad input (orjson's error is a ValueError)."""
        return orjson.loads(data)

    def dumps(value: Any, *, default: Default = None) -> bytes:
        """Compact UTF-8 JSON bytes; `default` turns a value JSON lacks into one it has."""
        return orjson.dumps(value, default=default)

    def dumps_any_keys(value: Any, *, default: Default = None) -> bytes:
        """`dumps` that also takes keys other than plain str (header names are `istr`)."""
        return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS)

    CODEC = "orjson"

except ImportError:  # pragma: no cover - depends on the environment
    loads = stdlib_loads
    dumps = stdlib_dumps
    dumps_any_keys = stdlib_dumps_any_keys
    CODEC = "stdlib"
