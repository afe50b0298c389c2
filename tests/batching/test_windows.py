"""Batch windows (postbackd.batching.windows): aligned to the clock, so every node and every
restart agrees on a delivery's window."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from postbackd.batching import parse_batch, window_end_of, window_key


def test_an_interval_window_is_aligned_to_the_epoch() -> None:
    hourly = parse_batch("1h")
    assert hourly.end_after(7200.0) == 10800.0  # a moment on the boundary opens the next window
    assert hourly.end_after(7200.5) == 10800.0
    assert hourly.start_of(10800.0) == 7200.0
    assert parse_batch("15m").end_after(1000.0) == 1800.0


def test_a_daily_window_ends_at_the_local_time_given() -> None:
    daily = parse_batch("daily 18:00")
    now = time.time()
    end = datetime.fromtimestamp(daily.end_after(now)).astimezone()
    assert (end.hour, end.minute, end.second) == (18, 0, 0)
    assert 0 < end.timestamp() - now <= 86400 + 3600  # a DST change may add an hour
    assert daily.start_of(end.timestamp()) == pytest.approx((end - timedelta(days=1)).timestamp())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("soon", "invalid batch 'soon': write an interval like \"1h\""),
        ("daily 25:00", "invalid batch 'daily 25:00'"),
        ("500ms", "batch '500ms' is shorter than 1s"),
    ],
)
def test_bad_batch_values_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_batch(text)
    assert str(caught.value).startswith(message)


def test_window_keys_round_trip() -> None:
    key = window_key("acme-ship", 1764957600.0)
    assert key == "acme-ship@1764957600000"
    assert window_end_of(key) == 1764957600.0
