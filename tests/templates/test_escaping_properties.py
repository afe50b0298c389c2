"""Properties of the escaping: no string from an event can break a JSON or XML payload."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from postbackd.config.model import Location, TemplateConfig
from postbackd.events import Event
from postbackd.templates.engine import RenderError, TemplateEngine

NASTY = 'He said "hi" \\ <b>&</b>\n'
XML_ILLEGAL = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + ["\ufffe", "\uffff"]

HERE = Location(Path("conf.d/props.toml"), 1)
ENGINE = TemplateEngine(
    {
        "json": TemplateConfig("json", "json", '{"v": "{{ v }}", "t": {{ v | tojson }}}', HERE),
        "xml": TemplateConfig(
            "xml", "xml", '<?xml version="1.0"?>\n<r v="{{ v }}">{{ v }}</r>\n', HERE
        ),
        "html": TemplateConfig("html", "html", "<p>{{ v }}</p>", HERE),
    },
    {},
)

# Surrogates are left out: a high and a low one side by side are one character to any JSON
# reader. Lone surrogates are covered by the @example below and by test_templates.py.
any_text = st.text()
xml_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters=XML_ILLEGAL))


def render(name: str, value: str) -> bytes:
    event = Event(id="evt", type="order.shipped", customer="acme", time="t", data={"v": value})
    return ENGINE.render(name, event, None).body


@given(any_text)
@example(NASTY)
@example("\x00\x1f\x7f\u2028\u2029\ud800 \udfff\U0001f4e6")
@example('"}, "injected": true, "x": {"')
def test_any_string_round_trips_through_a_json_template(value: str) -> None:
    assert json.loads(render("json", value)) == {"v": value, "t": value}


@given(xml_text)
@example(NASTY)
@example("  \r\n\tpadded\r\n  ")
@example("\r")
@example("]]><!-- &amp; \U0001f4e6 \x85\x7f")
def test_any_string_xml_can_carry_round_trips_through_an_xml_template(value: str) -> None:
    root = ET.fromstring(render("xml", value))
    assert (root.text or "") == value
    assert root.get("v") == value


@given(xml_text, st.sampled_from([*XML_ILLEGAL, "\ud800", "\udfff"]), xml_text)
def test_a_character_xml_cannot_carry_is_an_error_naming_the_variable(
    before: str, bad: str, after: str
) -> None:
    for name in ("xml", "html"):
        with pytest.raises(RenderError) as caught:
            render(name, before + bad + after)
        assert caught.value.variable == "v"
        assert f"U+{ord(bad):04X}" in str(caught.value)


def test_the_concrete_nasty_value_reads_back_from_json_and_xml() -> None:
    assert json.loads(render("json", NASTY))["v"] == NASTY
    root = ET.fromstring(render("xml", NASTY))
    assert root.text == NASTY
    assert root.get("v") == NASTY
