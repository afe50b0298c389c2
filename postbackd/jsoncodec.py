"""One JSON codec for the hot path: orjson when installed (the `speedups` extra), else stdlib."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Default = Callable[[Any], Any] | None

try:  # pragma: no cover - depends on the environment
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

except ImportError:  # pragma: no cover - depends on the environment

    def loads(data: bytes | str) -> Any:
        """Parse JSON; raises ValueError on bad input."""
        try:
            return json.loads(data)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply") from exc

    def dumps(value: Any, *, default: Default = None) -> bytes:
        """Compact UTF-8 JSON bytes; `default` turns a value JSON lacks into one it has."""
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default)
        return text.encode()

    def dumps_any_keys(value: Any, *, default: Default = None) -> bytes:
        """`dumps` that also takes keys other than plain str (header names are `istr`)."""
        return dumps(value, default=default)
