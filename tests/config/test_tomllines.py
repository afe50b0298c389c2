"""`TomlLines.lazy` answers every line exactly as the full scan does."""

from __future__ import annotations

import tomllib
from textwrap import dedent
from typing import Any

import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from postbackd.config.tomllines import KeyPath, TomlLines

TRICKY = dedent(
    '''\
    title = "no [header] here"  # nor [here]
    [daemon]
    spool = "x"
    nested = [
      [1],
      ["a"]
    ]
    [[trigger]]
    name = "one"
    body = """
    [[trigger]]
    [not.a.header]
    """
    options = { url = "u", headers = { X = "y" } }
    [trigger.options2]
    literal = \'\'\'
    [[customer]]
    \'\'\'
    [[trigger]]
    name = "two"
    [fruit]
    apple.color = "red"
    [fruit.apple.texture]
    smooth = true
    [[customer]]
    id = "c"
    '''
)


def _paths(node: Any, prefix: KeyPath = ()) -> list[KeyPath]:
    paths: list[KeyPath] = []
    children = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in children:
        paths.append((*prefix, key))
        if isinstance(value, dict | list):
            paths.extend(_paths(value, (*prefix, key)))
    return paths


def _same_lines(text: str) -> None:
    document = tomllib.loads(text)
    full = TomlLines.scan(text)
    for path in [*_paths(document), ("missing",), ("trigger", 9), ("trigger", 0, "nope")]:
        assert TomlLines.lazy(text).line_of(*path) == full.line_of(*path), (path, text)
    lazy = TomlLines.lazy(text)
    for path in _paths(document):
        assert lazy.line_of(*path) == full.line_of(*path), (path, text)
    assert lazy.lines == full.lines


def test_headers_inside_strings_and_nested_arrays_are_not_headers() -> None:
    _same_lines(TRICKY)
    lazy = TomlLines.lazy(TRICKY)
    assert lazy.line_of("trigger", 0) == 8
    assert lazy.line_of("trigger", 1) == 19
    assert lazy.line_of("trigger", 0, "options2") == 15
    assert lazy.line_of("customer", 0) == 25
    assert lazy.line_of("fruit", "apple") == 22  # written by the dotted key, not the header
    assert lazy.line_of("fruit", "apple", "texture") == 23


def test_quoted_and_spaced_header_keys() -> None:
    text = '[ "quoted key" . b ]\na = 1\n[[ spaced ]]\nb = 2\n[plain]\n'
    _same_lines(text)
    assert TomlLines.lazy(text).line_of("quoted key", "b") == 1
    assert TomlLines.lazy(text).line_of("spaced", 0) == 3
    assert TomlLines.lazy(text).line_of("plain") == 5


_SCALARS = st.one_of(st.text(max_size=12), st.integers(), st.booleans())
_BARE_KEYS = st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True)


def _documents(keys: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    values = st.recursive(
        _SCALARS,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(keys, inner, max_size=3)
            | st.lists(st.dictionaries(keys, inner, min_size=1, max_size=3), min_size=1, max_size=3)
        ),
        max_leaves=14,
    )
    return st.dictionaries(keys, values, min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(_documents(_BARE_KEYS), st.booleans())
def test_lazy_lines_match_the_full_scan(document: dict[str, Any], multiline: bool) -> None:
    _same_lines(tomli_w.dumps(document, multiline_strings=multiline))


@settings(max_examples=100, deadline=None)
@given(_documents(st.text(min_size=1, max_size=8)), st.booleans())
def test_lazy_lines_match_the_full_scan_with_any_key(
    document: dict[str, Any], multiline: bool
) -> None:
    _same_lines(tomli_w.dumps(document, multiline_strings=multiline))
