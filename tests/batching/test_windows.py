"""Batch windows and shipment file names (postbackd.batching): aligned to the clock, so every
node and every restart agrees; names that cannot leave their directory."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from postbackd.batching import (
    DEFAULT_FILE_NAME,
    check_file_name,
    file_name,
    parse_batch,
    window_end_of,
    window_key,
)


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


def test_file_names_are_filled_in_and_parts_numbered() -> None:
    fields = {"trigger": "ship", "customer": "acme", "start": 0.0, "end": 86400.0, "ext": "csv"}
    assert file_name(DEFAULT_FILE_NAME, part=1, **fields) == "ship-19700102T000000Z.csv"
    assert file_name(DEFAULT_FILE_NAME, part=2, **fields) == "ship-19700102T000000Z-2.csv"
    assert file_name("{customer}-{end:%Y%m%d}{part}.{ext}", part=1, **fields) == (
        "acme-19700102.csv"
    )


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("../{trigger}.csv", "a file name may hold only letters"),
        ("sub/{trigger}.csv", "a file name may hold only letters"),
        (".{trigger}.csv", "no leading dot"),
        ("{end.__class__}.csv", "unknown field {end.__class__}"),
        ("{trigger[0]}.csv", "unknown field {trigger[0]}"),
        ("{orderId}.csv", "unknown field {orderId}"),
        ("{trigger", "invalid file name pattern"),
        ("x" * 300, "over 200 chars"),
    ],
)
def test_hostile_file_name_patterns_are_refused(pattern: str, reason: str) -> None:
    problem = check_file_name(pattern)
    assert problem is not None and reason in problem
