"""Running a compiled template and checking that a json/xml body is what it claims to be.

A template can be valid Jinja and still produce broken JSON — the hosted platform's own
"Order Shipped" example does as soon as an order has two parcels. So a json body must parse,
an xml body must be well-formed and a csv body must be a header row and records as wide as it
before it is stored; the error says where in the body and, as near as can be told, which
template line wrote that part of it.
"""

from __future__ import annotations

import csv
import io
import json
import weakref
import xml.parsers.expat
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Template

from postbackd import jsoncodec
from postbackd.config import TemplateFormat


@dataclass(frozen=True)
class Invalid:
    """Why a rendered body is not valid JSON/XML, and where (1-based line and column)."""

    line: int
    column: int
    reason: str


@dataclass(frozen=True)
class Output:
    """The rendered text and, for json/xml, where each piece of it came from.

    `marks` holds, per piece, its start offset in `text`, the Python line of the compiled code
    that yielded it and that code's template (mapped to a template line only when needed).
    """

    text: str
    marks: tuple[tuple[int, int, Template], ...] = ()

    def template_line_at(self, line: int, column: int) -> int | None:
        """The template line that wrote the body position (`line`, `column`)."""
        if not self.marks:
            return None
        position = _offset_of(self.text, line, column)
        index = max(bisect_right([mark[0] for mark in self.marks], position) - 1, 0)
        start, code_line, template = self.marks[index]
        # Template text keeps its newlines (and escaped values have none), so counting the
        # newlines between the piece's start and the position finds the line within it.
        return int(template.get_corresponding_lineno(code_line)) + self.text.count(
            "\n", start, position
        )


def run(template: Template, context: Mapping[str, Any], *, track: bool) -> Output:
    """Render `template`; with `track`, remember which template line wrote each piece."""
    if not track:
        # What Template.render does, minus the generator layer of Template.generate around
        # every piece and the walk over the template's globals (a ChainMap) at each render.
        env = template.environment
        known = _globals_of(template)
        try:
            parent = {**known, **context}
            jinja_context = env.context_class(
                env, parent, template.name, template.blocks, globals=known
            )
            return Output("".join(template.root_render_func(jinja_context)))
        except Exception:
            env.handle_exception()
    generator = template.generate(context)
    pieces: list[str] = []
    marks: list[tuple[int, int, Template]] = []
    offset = 0
    for piece in generator:
        frame_line, frame_template = _yielding_frame(generator)
        if frame_template is not None:
            marks.append((offset, frame_line, frame_template))
        pieces.append(piece)
        offset += len(piece)
    return Output("".join(pieces), tuple(marks))


def _globals_of(template: Template) -> dict[str, Any]:
    """The template's globals as a plain dict, made once per template (they never change)."""
    known = _GLOBALS.get(template)
    if known is None:
        known = _GLOBALS[template] = dict(template.globals)
    return known


_GLOBALS: weakref.WeakKeyDictionary[Template, dict[str, Any]] = weakref.WeakKeyDictionary()


def _yielding_frame(generator: Iterator[str]) -> tuple[int, Template | None]:
    """The innermost generator's line: ``generate`` delegates to the template's code."""
    inner: Any = generator
    while getattr(inner, "gi_yieldfrom", None) is not None:
        inner = inner.gi_yieldfrom
    frame = getattr(inner, "gi_frame", None)
    if frame is None:
        return 0, None
    return frame.f_lineno, frame.f_globals.get("__jinja_template__")


def check_body(format: TemplateFormat, text: str) -> Invalid | None:
    """None when `text` is valid for `format` (text and html are not checked)."""
    if format == "json":
        return _check_json(text)
    if format == "xml":
        return _check_xml(text)
    if format == "csv":
        return _check_csv(text)
    return None


def _check_csv(text: str) -> Invalid | None:
    """RFC 4180 as imports read it: a header row, then records with as many fields as it has.

    The csv module in strict mode finds a quote out of place; a record with another number of
    fields (a stray comma in the template, a missing column) is caught by counting.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    try:
        for record in reader:
            if header is None:
                header = record
                if not any(field.strip() for field in record):
                    return Invalid(1, 1, "the first row must be a header naming the columns")
            elif record and len(record) != len(header):
                return Invalid(
                    reader.line_num,
                    1,
                    f"record has {len(record)} fields, the header has {len(header)}",
                )
    except csv.Error as exc:
        return Invalid(max(reader.line_num, 1), 1, str(exc))
    if header is None:
        return Invalid(1, 1, "empty: a CSV body needs at least its header row")
    return None


def _check_json(text: str) -> Invalid | None:
    try:
        jsoncodec.loads(text)
        return None  # the fast codec is strict (RFC 8259): what it takes, json takes too
    except ValueError:
        pass  # perhaps only stricter than json (a lone surrogate escape): ask json, for where
    try:
        json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return Invalid(exc.lineno, exc.colno, exc.msg)
    except _NotJson as exc:
        line, column = _line_column(text, text.find(exc.name))
        return Invalid(line, column, f"{exc.name} is not a JSON value")
    return None


class _NotJson(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _reject_constant(name: str) -> Any:
    raise _NotJson(name)


def _check_xml(text: str) -> Invalid | None:
    parser = xml.parsers.expat.ParserCreate()
    try:
        parser.Parse(text.encode("utf-8", "surrogatepass"), True)
    except xml.parsers.expat.ExpatError as exc:
        reason = xml.parsers.expat.errors.messages[exc.code]
        return Invalid(exc.lineno, exc.offset + 1, reason)
    return None


def _offset_of(text: str, line: int, column: int) -> int:
    start = 0
    for _ in range(line - 1):
        found = text.find("\n", start)
        if found < 0:
            break
        start = found + 1
    return min(start + max(column - 1, 0), len(text))


def _line_column(text: str, offset: int) -> tuple[int, int]:
    offset = max(offset, 0)
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1
