"""The names of the shipment files a batch window closes into (``batch_file``).

A name is filled in from the window when it closes (`file_name`) and stored with the file, so a
file sent again after a crash carries the same name; a pattern is checked when the
configuration is loaded (`check_file_name`), so a name that is not one plain file name (a
path, ``..``, characters a share may refuse) is refused at the key's line, not at the end of a
window.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from typing import Any

DEFAULT_FILE_NAME = "{trigger}-{end:%Y%m%dT%H%M%SZ}{part}.{ext}"
FILE_NAME_FIELDS = ("trigger", "customer", "start", "end", "part", "ext")
FILE_NAME_LIMIT = 200
_SAFE_NAME = re.compile(r"[A-Za-z0-9._+=@,-]+")
EXTENSIONS = {"json": "jsonl", "xml": "xml", "text": "txt", "html": "html", "csv": "csv"}


def check_file_name(
    pattern: str, trigger: str = "trigger", customer: str = "customer"
) -> str | None:
    """Why `pattern` (``batch_file``) cannot name the files of `trigger`, or None when it can."""
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        return f"invalid file name pattern {pattern!r}: {exc}"
    for _, field, _, _ in parsed:
        if field is None:
            continue
        if field not in FILE_NAME_FIELDS:
            return f"unknown field {{{field}}} in file name pattern {pattern!r}; use " + ", ".join(
                f"{{{name}}}" for name in FILE_NAME_FIELDS
            )
    try:
        sample = file_name(
            pattern, trigger=trigger, customer=customer, end=86400.0, start=0.0, part=1
        )
    except ValueError as exc:
        return str(exc)
    if not sample:
        return f"file name pattern {pattern!r} gives an empty name"
    return None


def file_name(
    pattern: str,
    *,
    trigger: str,
    customer: str,
    start: float,
    end: float,
    part: int,
    ext: str = "txt",
) -> str:
    """The name of the `part`-th file (from 1) of a window; ValueError for a name that is not
    one plain file name (a path separator, ``..``, characters a share may refuse)."""
    fields: dict[str, Any] = {
        "trigger": trigger,
        "customer": customer,
        "start": datetime.fromtimestamp(start, UTC),
        "end": datetime.fromtimestamp(end, UTC),
        "part": "" if part <= 1 else f"-{part}",
        "ext": ext,
    }
    try:
        name = pattern.format(**fields)
    except (KeyError, ValueError, IndexError, AttributeError) as exc:
        raise ValueError(f"file name pattern {pattern!r} cannot be filled in: {exc}") from None
    if not _SAFE_NAME.fullmatch(name) or name in {".", ".."} or name.startswith("."):
        raise ValueError(
            f"file name pattern {pattern!r} gives {name!r}: a file name may hold only letters, "
            "digits and . _ + = @ , - (no path, no leading dot)"
        )
    if len(name) > FILE_NAME_LIMIT:
        raise ValueError(f"file name pattern {pattern!r} gives a name over {FILE_NAME_LIMIT} chars")
    return name
