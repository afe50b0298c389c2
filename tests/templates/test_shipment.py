"""A shipment file's frame: header, rows, footer, for each format — JSON Lines, a well-formed
XML document, plain text/CSV — and a clear error when the parts do not make a valid file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from postbackd.config import Location, TemplateConfig
from postbackd.templates import FileFrame, RenderError, TemplateEngine, compose_file

HERE = Location(Path("templates.toml"), 1)
FRAME = FileFrame(
    trigger="ship",
    customer="acme",
    customer_name="Acme <Prints> & Co",
    file_name="acme-1.xml",
    window_start=0.0,
    window_end=3600.0,
    rows=2,
)


def engine(format: str, body: str, header: str | None, footer: str | None) -> TemplateEngine:
    config = TemplateConfig(
        name="t",
        format=format,
        body=body,
        location=HERE,
        header=header,
        footer=footer,  # type: ignore[arg-type]
    )
    return TemplateEngine({"t": config}, {})


def test_xml_header_and_footer_frame_the_rows_into_one_document() -> None:
    xml = engine(
        "xml",
        "<Shipment/>",
        '<?xml version="1.0"?>\n<Shipments customer="{{ customer.name }}" '
        'count="{{ batch.rows }}" end="{{ batch.end }}">',
        "</Shipments>",
    )
    rows = [b'<Shipment order="o-1"/>', b'<Shipment order="o-2"/>']
    body = compose_file(xml, "t", FRAME, rows)
    root = ElementTree.fromstring(body)
    assert root.attrib == {
        "customer": "Acme <Prints> & Co",
        "count": "2",
        "end": "1970-01-01T01:00:00Z",
    }
    assert [child.attrib["order"] for child in root] == ["o-1", "o-2"]


def test_xml_without_its_closing_footer_is_a_render_error() -> None:
    xml = engine("xml", "<Shipment/>", "<Shipments>", None)
    with pytest.raises(RenderError) as caught:
        compose_file(xml, "t", FRAME, [b"<Shipment/>"])
    assert "the shipment file acme-1.xml is not well-formed XML" in str(caught.value)
    assert "the header must open the root element and the footer close it" in str(caught.value)


def test_json_rows_become_one_line_each() -> None:
    jsonl = engine("json", "{}", '{"rows": {{ batch.rows }}}', None)
    rows = [b'{\n  "orderId": "o-1"\n}', b'{"orderId": "o-2", "note": "a\\u2028b"}']
    lines = compose_file(jsonl, "t", FRAME, rows).decode().split("\n")
    assert lines == ['{"rows":2}', '{"orderId":"o-1"}', '{"orderId":"o-2","note":"a\\u2028b"}', ""]
    assert json.loads(lines[2])["note"] == "a\u2028b"


def test_a_json_header_that_is_not_json_is_a_render_error() -> None:
    jsonl = engine("json", "{}", "orders:", None)
    with pytest.raises(RenderError, match="the header of a JSON Lines shipment file"):
        compose_file(jsonl, "t", FRAME, [b"{}"])


def test_text_parts_are_joined_one_per_line() -> None:
    csv = engine("text", "x", "orderId,status", "# {{ batch.rows }} rows in {{ batch.file }}")
    body = compose_file(csv, "t", FRAME, [b"o-1,shipped", b"o-2,shipped\n"])
    assert body == b"orderId,status\no-1,shipped\no-2,shipped\n# 2 rows in acme-1.xml\n"
    plain = engine("text", "x", None, None)
    assert compose_file(plain, "t", FRAME, [b"a", b"b"]) == b"a\nb\n"


def test_csv_rows_become_rfc_4180_records_under_their_header() -> None:
    csv_engine = engine("csv", "{{ orderId }},{{ note }}", "order_id,note", None)
    event_rows = [b"o-1,plain", b'o-2,"with, comma"\r\n']
    body = compose_file(csv_engine, "t", FRAME, event_rows)
    assert body == b'order_id,note\r\no-1,plain\r\no-2,"with, comma"\r\n'
    assert list(csv.reader(io.StringIO(body.decode(), newline=""))) == [
        ["order_id", "note"],
        ["o-1", "plain"],
        ["o-2", "with, comma"],
    ]


def test_a_csv_row_that_does_not_fit_the_header_is_a_render_error() -> None:
    csv_engine = engine("csv", "x", "order_id,note,carrier", None)
    with pytest.raises(RenderError, match="is not valid CSV at line 2: record has 2 fields"):
        compose_file(csv_engine, "t", FRAME, [b"o-1,plain"])
