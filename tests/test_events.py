"""Decoding event bodies: nesting limits and what is rejected."""

from __future__ import annotations

import json

import pytest

from postbackd.events import MAX_DEPTH, EventRejected, decode_json, parse_events


def nested(depth: int) -> object:
    """A document whose deepest container is at `depth` (1 = the top-level object)."""
    value: object = {"leaf": 1}
    for level in range(depth - 1):
        value = {"a": value} if level % 2 else [value]
    return value


def test_a_document_nested_up_to_the_limit_is_accepted() -> None:
    document = nested(MAX_DEPTH)
    assert decode_json(json.dumps(document).encode()) == document


def test_a_document_nested_beyond_the_limit_is_rejected_with_the_limit() -> None:
    with pytest.raises(EventRejected, match=f"nested deeper than {MAX_DEPTH} levels"):
        decode_json(json.dumps({"ok": 1, "deep": nested(MAX_DEPTH)}).encode())


def test_scalars_and_wide_documents_are_not_depth_problems() -> None:
    assert decode_json(b"3") == 3
    wide = {"items": [{"n": i, "tags": ["a", "b"]} for i in range(500)]}
    assert decode_json(json.dumps(wide).encode()) == wide


def test_a_batch_of_events_is_parsed_in_order() -> None:
    raw = json.dumps(
        [{"id": f"e{i}", "type": "order.shipped", "customer": "acme", "data": {}} for i in range(3)]
    ).encode()
    assert [event.id for event in parse_events(raw)] == ["e0", "e1", "e2"]
