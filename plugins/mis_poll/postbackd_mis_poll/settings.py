"""The ``[sources.mis-poll]`` table, checked when the source is built (a bad one stops start-up).

- ``url`` (required) — the MIS endpoint answering ``GET url?since=CURSOR&limit=N``;
- ``state_file`` (required) — where the cursor is kept, so a restart resumes (relative paths
  are relative to the TOML file);
- ``ack_url`` — if set, ``POST {"cursor": ...}`` there once the events up to that cursor are
  stored, so the MIS can mark them exported;
- ``token`` — sent as ``Authorization: Bearer``; use ``${env:...}``;
- ``interval`` (``"30s"``) — the pause between polls when there is nothing more to fetch;
- ``max_backoff`` (``"5m"``) — errors are retried after interval × 2ⁿ, at most this;
- ``batch`` (100) — the ``limit`` asked for; a full page is followed at once by the next;
- ``timeout`` (``"10s"``) — one HTTP request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from postbackd.plugin import parse_duration

KNOWN = frozenset(
    {"url", "state_file", "ack_url", "token", "interval", "max_backoff", "batch", "timeout"}
)


@dataclass(frozen=True)
class PollSettings:
    url: str
    state_file: Path
    ack_url: str | None = None
    token: str | None = None
    interval: float = 30.0
    max_backoff: float = 300.0
    batch: int = 100
    timeout: float = 10.0

    @classmethod
    def parse(cls, table: Mapping[str, Any]) -> PollSettings:
        """Raise ValueError listing every problem of the table."""
        errors = [
            f"unknown setting {name!r} (known: {', '.join(sorted(KNOWN))})"
            for name in sorted(set(table) - KNOWN)
        ]
        for name in ("url", "ack_url"):
            value = table.get(name)
            if value is None and name == "ack_url":
                continue
            if not isinstance(value, str) or not _is_http_url(value):
                errors.append(f"{name} must be an http(s) URL, got {value!r}")
        state_file = table.get("state_file")
        if not isinstance(state_file, str) or not state_file.strip():
            errors.append("state_file is required: a file where the cursor is kept")
        token = table.get("token")
        if token is not None and not isinstance(token, str):
            errors.append("token must be a string")
        durations = {}
        for name, default in (("interval", 30.0), ("max_backoff", 300.0), ("timeout", 10.0)):
            try:
                durations[name] = parse_duration(table[name]) if name in table else default
            except (TypeError, ValueError) as exc:
                errors.append(f"{name}: {exc}")
                continue
            if durations[name] <= 0:
                errors.append(f"{name} must be more than 0s")
        batch = table.get("batch", 100)
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 10_000:
            errors.append(f"batch must be a whole number from 1 to 10000, got {batch!r}")
        if errors:
            raise ValueError("; ".join(errors))
        return cls(
            url=str(table["url"]),
            state_file=Path(str(state_file)),
            ack_url=table.get("ack_url"),
            token=token,
            batch=int(batch),
            **durations,
        )


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
