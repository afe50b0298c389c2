"""Both JSON codecs take and refuse exactly the same documents (DESIGN §9).

The daemon uses orjson when installed and the strict stdlib fallback otherwise; a document one
of them takes and the other refuses would be a 202 on one machine and a 400 (or a 500) on
another. Each case runs through both codecs, and hypothesis looks for a document they disagree
on among texts built from JSON's own tokens and the hostile ones.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postbackd import jsoncodec

orjson = pytest.importorskip("orjson")

HOSTILE = [
    '"\\ud800"',
    '{"a": ["x", "\\udfff"]}',
    '{"\\ud800": 1}',
    '"\\ud83d"',
    '"\\ude00\\ud83d"',
    "NaN",
    "[Infinity]",
    '{"v": -Infinity}',
    "1e999",
    "-1e999",
    "[1.0E400]",
    "1" + "0" * 400,
    "1" * 5000,
    "01",
    "1.",
    ".5",
    "+1",
    "[1,]",
    '{"a":1,}',
    "'x'",
    '"\x01"',
    "",
    "[",
]
ACCEPTED = [
    '"\\ud83d\\ude00"',
    '"\\\\ud800"',  # an escaped backslash, then the letters ud800: no surrogate
    "1e308",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    '"\\u0000"',
    '{"a": 1, "a": 2}',
    " [1, 2.5e-324, true, null] ",
]


def outcome(loads: Any, text: str) -> tuple[str, Any]:
    try:
        return "ok", loads(text)
    except ValueError:
        return "refused", None


def same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return left == right or (math.isnan(left) and math.isnan(right))
    return type(left) is type(right) and left == right


@pytest.mark.parametrize("text", HOSTILE)
def test_both_codecs_refuse_hostile_json(text: str) -> None:
    assert outcome(orjson.loads, text)[0] == "refused"
    assert outcome(jsoncodec.stdlib_loads, text)[0] == "refused"
    with pytest.raises(ValueError):
        jsoncodec.loads(text)


@pytest.mark.parametrize("text", ACCEPTED)
def test_both_codecs_accept_the_same_value(text: str) -> None:
    fast, fallback = outcome(orjson.loads, text), outcome(jsoncodec.stdlib_loads, text)
    assert fast[0] == fallback[0] == "ok"
    assert jsoncodec.stdlib_dumps(fallback[1]) == orjson.dumps(fast[1])


TOKENS = st.sampled_from(
    [
        "{", "}", "[", "]", ",", ":", '"', "\\", "\\u", "d800", "dc00", "D83D", "DE00", "u",
        "0", "1", "-", "+", ".", "e", "E", "999", "400", "NaN", "Infinity", "true", "null",
        " ", "\n", "\x00", "\x1f", "é", "😀", '"a"', '"\\ud800"', '"\\ud83d\\ude00"',
        "18446744073709551616", "1e308", "1e309", "a",
    ]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(TOKENS, max_size=14).map("".join))
def test_the_codecs_never_disagree(text: str) -> None:
    fast, fallback = outcome(orjson.loads, text), outcome(jsoncodec.stdlib_loads, text)
    assert fast[0] == fallback[0], f"{text!r}: orjson {fast}, stdlib {fallback}"
    if fast[0] == "ok":
        assert orjson.dumps(fast[1]) == jsoncodec.stdlib_dumps(fallback[1]) or same(
            fast[1], fallback[1]
        )


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    )
)
def test_documents_from_python_values_agree(value: Any) -> None:
    """Values written by Python's json (NaN and surrogates included) are judged alike."""
    import json

    text = json.dumps(value)
    fast, fallback = outcome(orjson.loads, text), outcome(jsoncodec.stdlib_loads, text)
    assert fast[0] == fallback[0], f"{text!r}: orjson {fast}, stdlib {fallback}"
