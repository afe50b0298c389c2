"""Unit checks behind the small hostile inputs of issue 14 (item 9)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from postbackd.config import load_config
from postbackd.config.bounded_read import NotReadable, read_regular_file, read_regular_text
from postbackd.deliveries.webhook.delivery import _retry_after
from postbackd.events import EventRejected, parse_event
from postbackd.testing import event_payload


@pytest.mark.parametrize("value", ["²", "١٢", "1e3", "-5", "Mon, 99 Foo 2020 99:99:99 GMT", ""])
def test_an_unreadable_retry_after_is_none(value: str) -> None:
    assert _retry_after(value) is None


def test_a_numeric_retry_after_is_seconds() -> None:
    assert _retry_after(" 120 ") == 120.0


@pytest.mark.parametrize("field", ["type", "customer"])
def test_type_and_customer_have_a_length_limit(field: str) -> None:
    with pytest.raises(EventRejected) as info:
        parse_event({**event_payload(), field: "x" * 201})
    assert info.value.field == field
    assert parse_event({**event_payload(), field: "order.x" if field == "type" else "x" * 200})


def test_breaker_failures_zero_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("[daemon]\nbreaker_failures = 0\n")
    assert load_config(tmp_path, environ={}).daemon.breaker_failures == 0


def test_only_regular_files_are_read_and_never_past_the_limit(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotReadable, match="is a FIFO"):
        read_regular_file(fifo, 10)
    with pytest.raises(NotReadable, match="is a device"):
        read_regular_file(Path("/dev/zero"), 10)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    with pytest.raises(NotReadable, match="larger than 10 bytes"):
        read_regular_file(big, 10)
    big.write_bytes(b"a\r\nb")
    assert read_regular_text(big, 10) == "a\nb"
