"""Batch windows of a trigger with ``batch = "1h"`` or ``batch = "daily 18:00"``.

A batching trigger does not send each delivery on its own: the router stamps every delivery
with the window it falls in (`window_key`), and when that window ends the batcher
(`postbackd.batching.batcher`) writes its deliveries into one file. Windows are aligned to the
clock, not to the first delivery, so every node of a fleet and every restart agrees on which
window a delivery belongs to, and a file re-sent after a crash carries the same name
(`postbackd.batching.file_names`).

An interval (``"15m"``, ``"1h"``, ``"1d"``) is aligned to the epoch in UTC; a daily time
(``"daily 18:00"``) is the host's local time, which is what an operator means when they say
"the 6 pm file".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from postbackd.units import parse_duration

MIN_INTERVAL = 1.0
_DAILY = re.compile(r"daily\s+([01]?\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True)
class BatchWindow:
    """How a trigger's deliveries are grouped into files: every `interval` seconds (aligned to
    the epoch) or once a day at `daily` (hour, minute, local time)."""

    text: str
    interval: float | None = None
    daily: tuple[int, int] | None = None

    def end_after(self, moment: float) -> float:
        """The end of the window `moment` falls in (always later than `moment`)."""
        if self.interval is not None:
            return (int(moment // self.interval) + 1) * self.interval
        assert self.daily is not None
        local = datetime.fromtimestamp(moment).astimezone()
        hour, minute = self.daily
        end = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if end.timestamp() <= moment:
            end = (end + timedelta(days=1)).replace(hour=hour, minute=minute)
        return end.timestamp()

    def start_of(self, end: float) -> float:
        """The start of the window that ends at `end`."""
        if self.interval is not None:
            return end - self.interval
        return (datetime.fromtimestamp(end).astimezone() - timedelta(days=1)).timestamp()


def parse_batch(text: str) -> BatchWindow:
    """``"1h"`` / ``"15m"`` / ``"daily 18:00"`` → a `BatchWindow`; ValueError saying what to
    write instead."""
    value = text.strip()
    daily = _DAILY.fullmatch(value)
    if daily:
        return BatchWindow(value, daily=(int(daily.group(1)), int(daily.group(2))))
    try:
        interval = parse_duration(value)
    except ValueError:
        raise ValueError(
            f'invalid batch {text!r}: write an interval like "1h" or "15m", or a daily time '
            'like "daily 18:00" (24-hour clock, local time)'
        ) from None
    if interval < MIN_INTERVAL:
        raise ValueError(f"batch {text!r} is shorter than {MIN_INTERVAL:g}s; use a longer window")
    return BatchWindow(value, interval=interval)


def window_key(trigger: str, end: float) -> str:
    """The key stored with each delivery of a window: the trigger and the window's end."""
    return f"{trigger}@{round(end * 1000)}"


def window_end_of(key: str) -> float:
    """The end of the window a `window_key` names."""
    return int(key.rpartition("@")[2]) / 1000
