"""A time budget for one render, so that no template can hold a thread (or the loop) for long.

A template whose cost grows faster than its input (a loop over the items inside a loop over
the items) turned one ~1 MB event into seconds of rendering. `within` sets a deadline for the
render running in this context; the sandbox (`postbackd.templates.compile`) calls
`check` on every attribute lookup, item lookup and call, and past the deadline the render stops
with a `TemplateFault` — the delivery is recorded ``failed`` with a reason that says so.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

from postbackd.templates.errors import TemplateFault

RENDER_SECONDS = 5.0

_DEADLINE: ContextVar[tuple[float, float] | None] = ContextVar("render_deadline", default=None)


@contextlib.contextmanager
def within(seconds: float = RENDER_SECONDS) -> Iterator[None]:
    """Renders in this block must end within `seconds` (checked at each lookup or call)."""
    token = _DEADLINE.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def check() -> None:
    """Raise `TemplateFault` when the render in this context is past its deadline."""
    budget = _DEADLINE.get()
    if budget is not None and time.monotonic() > budget[0]:
        raise TemplateFault(
            f"rendering took longer than {budget[1]:g}s and was stopped: the template's work "
            "grows too fast with this event (a loop inside a loop over its items?); simplify "
            "the template or send smaller events"
        )
