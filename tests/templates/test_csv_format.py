"""The ``csv`` template format: each value one RFC 4180 field, CRLF records, a checked shape."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from postbackd.config import load_config
from postbackd.config.model import Location, TemplateConfig
from postbackd.events import Event
from postbackd.templates.engine import RenderError, TemplateEngine

HERE = Location(Path("conf.d/csv.toml"), 1)
ROWS = """\
code,note,count
{% for row in rows %}{{ row.code }},{{ row.note }},{{ row.count }}
{% endfor %}"""
ENGINE = TemplateEngine(
    {
        "rows": TemplateConfig("rows", "csv", ROWS, HERE),
        "ragged": TemplateConfig("ragged", "csv", "a,b\n1,2,3\n", HERE),
        "quote": TemplateConfig("quote", "csv", 'a,b\n"x"y,2\n', HERE),
        "headless": TemplateConfig("headless", "csv", "{{ nothing | default('') }}", HERE),
    },
    {},
)


def render(name: str, **data: object) -> str:
    event = Event("e1", "order.shipped", "acme", "2026-11-28T10:00:00Z", data)
    return ENGINE.render(name, event, None).body.decode()


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), strict=True))


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"])))
@example('He said "hi", then\r\nleft')
@example(" padded ")
@example("")
def test_any_value_is_one_field_that_reads_back_unchanged(value: str) -> None:
    text = render("rows", rows=[{"code": value, "note": "n", "count": 1}])
    assert parse(text) == [["code", "note", "count"], [value, "n", "1"]]


def test_records_end_with_crlf_and_the_content_type_says_csv() -> None:
    event = Event("e1", "t", "acme", "x", {"rows": [{"code": "A", "note": "n", "count": 2}]})
    rendered = ENGINE.render("rows", event, None)
    assert rendered.body == b"code,note,count\r\nA,n,2\r\n"
    assert rendered.content_type == "text/csv; charset=utf-8; header=present"
    assert rendered.format == "csv"


def test_a_record_wider_than_the_header_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="invalid CSV at line 2, column 1: record has 3 fields"):
        render("ragged")


def test_a_quote_out_of_place_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="invalid CSV at line 2"):
        render("quote")


def test_a_body_without_a_header_row_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="CSV body needs at least its header row"):
        render("headless")


def test_the_configuration_accepts_the_csv_format(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text(
        '[[template]]\nname = "file"\nformat = "csv"\nbody = "a,b\\n"\n'
    )
    assert load_config(tmp_path, environ={}).templates["file"].format == "csv"
