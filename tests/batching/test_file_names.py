"""Shipment file names (postbackd.batching.file_names): filled in from the window, parts
numbered; patterns that cannot leave their directory refused."""

from __future__ import annotations

import pytest

from postbackd.batching import DEFAULT_FILE_NAME, check_file_name, file_name


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
