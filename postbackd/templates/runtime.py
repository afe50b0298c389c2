"""What runs inside a template render besides the template itself: undefined-variable tracking.

An undefined variable renders as "" (a pasted template with a field this event lacks still
goes out), but every use is recorded as a `TemplateWarning` with the template line, so
`postbackd render` and `check` can point at typos. The warnings of the render in progress are
collected in a context variable: renders are synchronous, and the variable keeps concurrent
renders in other threads or tasks apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from jinja2 import ChainableUndefined
from jinja2.utils import missing, object_type_repr

from postbackd.templates.errors import TemplatePart, TemplateWarning, running_template_line


class WarningSink:
    """The warnings of one render, deduplicated (a loop reports a line once)."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.part: TemplatePart = "body"
        self._warnings: dict[tuple[TemplatePart, str, int], TemplateWarning] = {}

    def add(self, message: str, line: int | None) -> None:
        key = (self.part, message, line or 0)
        if key not in self._warnings:
            self._warnings[key] = TemplateWarning(message, line or 0, self.template, self.part)

    def warnings(self) -> tuple[TemplateWarning, ...]:
        return tuple(self._warnings.values())


CURRENT_SINK: ContextVar[WarningSink | None] = ContextVar("postbackd_template_sink", default=None)


def note_undefined(message: str, line: int | None) -> None:
    """Record a warning for the render in progress (no-op outside a render)."""
    sink = CURRENT_SINK.get()
    if sink is not None:
        sink.add(message, line)


class RecordingUndefined(ChainableUndefined):
    """Renders as "", iterates as empty, allows ``missing.x`` — and records each use.

    Truth tests (``{% if x %}``, ``x is defined``, ``x | default(...)``) are not warnings:
    they are how a template handles an optional field.
    """

    __slots__ = ()

    def warning_message(self) -> str:
        if self._undefined_obj is missing:
            return f"undefined variable {self._undefined_name!r}"
        return (
            f"undefined attribute {self._undefined_name!r} of "
            f"{object_type_repr(self._undefined_obj)}"
        )

    def _note(self) -> None:
        note_undefined(self.warning_message(), running_template_line())

    def __str__(self) -> str:
        self._note()
        return ""

    def __iter__(self) -> Iterator[Any]:
        self._note()
        return iter(())

    def __len__(self) -> int:
        self._note()
        return 0
