"""One JSON codec for the hot path: orjson when installed (the `speedups` extra), else stdlib."""

from __future__ import annotations

import json
from typing import Any

try:  # pragma: no cover - depends on the environment
    import orjson

    def loads(data: bytes | str) -> Any:
        """Parse JSON; raises ValueError on bad input (orjson's error is a ValueError)."""
        return orjson.loads(data)

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON bytes."""
        return orjson.dumps(value)

except ImportError:  # pragma: no cover - depends on the environment

    def loads(data: bytes | str) -> Any:
        """Parse JSON; raises ValueError on bad input."""
        try:
            return json.loads(data)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply") from exc

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON bytes."""
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
