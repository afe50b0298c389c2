"""What a template render reports: warnings (undefined variables) and errors (RenderError).

Both carry the template's name and the line *in the template source* (1-based, counted from
the first line of the body or subject), so `postbackd check`, `render` and the request log can
say "template acme-shipped line 3: ...". Functions called from inside a running template raise
`TemplateFault`; the engine turns it into a RenderError once it knows the template.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

TemplatePart = Literal["body", "subject"]


@dataclass(frozen=True)
class TemplateWarning:
    """Something that rendered but is probably wrong, e.g. an undefined variable (rendered "")."""

    message: str
    line: int
    template: str = ""
    part: TemplatePart = "body"

    def __str__(self) -> str:
        return f"{_where(self.template, self.part, self.line)}{self.message}"


class RenderError(Exception):
    """A template that cannot produce a valid payload for this event.

    `line` is the template line (None when unknown); `column` is only set for invalid JSON/XML
    and is the column in the rendered body; `variable` names the ``{{ expression }}`` whose
    value was at fault, when one was.
    """

    def __init__(
        self,
        message: str,
        *,
        template: str | None = None,
        line: int | None = None,
        column: int | None = None,
        variable: str | None = None,
        part: TemplatePart = "body",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.template = template
        self.line = line
        self.column = column
        self.variable = variable
        self.part = part

    def __str__(self) -> str:
        if self.template is None:
            return self.message
        return f"{_where(self.template, self.part, self.line)}{self.message}"


class TemplateFault(Exception):
    """Raised by code running inside a template (escaping, lookups(), fail()).

    `line` is filled in when the raiser knows it (the output's own line); otherwise the engine
    finds it in the traceback.
    """

    def __init__(self, message: str, *, variable: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.variable = variable
        self.line = line


def _where(template: str, part: TemplatePart, line: int | None) -> str:
    if not template:
        return f"line {line}: " if line else ""
    text = f"template {template}"
    if part == "subject":
        text += " subject"
    if line:
        text += f" line {line}"
    return text + ": "


def running_template_line() -> int | None:
    """The template line being executed, found by walking up to the compiled template's frame.

    Jinja compiles a template to a Python module whose globals hold ``__jinja_template__``;
    its debug info maps the frame's Python line back to the template line.
    """
    frame = sys._getframe(1)
    while frame is not None:
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            return int(template.get_corresponding_lineno(frame.f_lineno))
        frame = frame.f_back  # type: ignore[assignment]
    return None


def traceback_template_line(tb: TracebackType | None, filename: str) -> int | None:
    """The innermost template line in a traceback.

    Jinja rewrites tracebacks so template frames appear as code from `filename` at the template
    line; a frame it did not rewrite still has ``__jinja_template__`` in its globals.
    """
    line: int | None = None
    while tb is not None:
        frame = tb.tb_frame
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            line = int(template.get_corresponding_lineno(tb.tb_lineno))
        elif frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
