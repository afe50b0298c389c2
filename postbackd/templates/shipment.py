"""A shipment file: a template's ``header``, the rows (the bodies its deliveries were rendered
to at routing time) and its ``footer``, joined into one file that is valid for the format.

The shape is the same for every format, so a new format composes without code here: the rows
are fixed at routing time like any payload, and only the frame is rendered when the window
closes (it may count the rows, name the window). What a format needs of the whole file:

- ``json``: JSON Lines — each row is written on one line (compacted), header and footer, if
  any, must each be one JSON value too; every line is checked.
- ``xml``: header + rows + footer must be one well-formed document (the header opens the root
  element, the footer closes it); the whole file is checked.
- ``csv``: the parts joined as RFC 4180 records (each ending in CRLF); the whole file is
  checked like a csv body — a header, then rows with as many fields.
- anything else (``text``): the parts joined, each ending with a line break.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from postbackd.templates.engine import RenderError, TemplateEngine
from postbackd.templates.output import check_body

# Characters many line readers (Python's splitlines, JavaScript) take for line breaks; JSON
# lets them stand raw inside strings, so a value holding one would split its row in two.
_LINE_BREAKS_ESCAPED = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


@dataclass(frozen=True)
class FileFrame:
    """What a shipment file's header and footer may name (``{{ batch.rows }}`` …)."""

    trigger: str
    customer: str
    customer_name: str
    file_name: str
    window_start: float
    window_end: float
    rows: int

    def context(self) -> dict[str, Any]:
        return {
            "batch": {
                "trigger": self.trigger,
                "file": self.file_name,
                "rows": self.rows,
                "start": _iso(self.window_start),
                "end": _iso(self.window_end),
            },
            "customer": {"id": self.customer, "name": self.customer_name},
        }


def compose_file(
    engine: TemplateEngine, template: str, frame: FileFrame, rows: Sequence[bytes]
) -> bytes:
    """The file's bytes; RenderError naming the template (and the row) when it is not valid."""
    config = engine.template(template)
    context = frame.context()
    header = engine.render_frame(template, "header", context)
    footer = engine.render_frame(template, "footer", context)
    texts = [row.decode("utf-8") for row in rows]
    if config.format == "json":
        return _json_lines(template, header, texts, footer)
    parts = [text for text in (header, *texts, footer) if text is not None]
    end = "\r\n" if config.format == "csv" else "\n"  # RFC 4180 records end in CRLF
    whole = "".join(part if part.endswith("\n") else part + end for part in parts)
    if config.format == "csv":
        invalid = check_body("csv", whole)
        if invalid is not None:
            raise RenderError(
                f"the shipment file {frame.file_name} is not valid CSV at line {invalid.line}: "
                f"{invalid.reason} (the header names the columns each row must fill)",
                template=template,
            )
    if config.format == "xml":
        invalid = check_body("xml", whole)
        if invalid is not None:
            raise RenderError(
                f"the shipment file {frame.file_name} is not well-formed XML at line "
                f"{invalid.line}, column {invalid.column}: {invalid.reason} (the header must "
                "open the root element and the footer close it)",
                template=template,
            )
    return whole.encode("utf-8")


def _json_lines(template: str, header: str | None, rows: list[str], footer: str | None) -> bytes:
    lines = []
    for label, text in (("header", header), *((f"row {i}", r) for i, r in enumerate(rows, 1))):
        if text is not None and text.strip():
            lines.append(_one_line(template, label, text))
    if footer is not None and footer.strip():
        lines.append(_one_line(template, "footer", footer))
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _one_line(template: str, label: str, text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RenderError(
            f"the {label} of a JSON Lines shipment file is not one JSON value: {exc}",
            template=template,
        ) from None
    line = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return line.translate(_LINE_BREAKS_ESCAPED)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
