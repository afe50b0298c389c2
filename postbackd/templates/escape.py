"""Format-aware escaping: a value from an event can never break the payload it is put into.

Every ``{{ expression }}`` of a template goes through the `emit` filter of the template's
format (the compiler wraps it, see `compile`): in ``json`` the value is escaped as the
inside of a JSON string, in ``xml`` and ``html`` it is XML-escaped, in ``csv`` it becomes one
whole RFC 4180 field (quoted when it holds a comma, a quote or a line break), in ``text`` it is
inserted as is. A `Safe` string — made by ``| raw``, ``| tojson``, a macro call or a ``{% set %}``
block — is already in the output format and is inserted verbatim, never escaped twice.

Values become text the same way in every format: None → "", booleans → ``true``/``false``,
numbers as Python writes them (which is their JSON text), lists and objects → their JSON text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring
from typing import Any

from jinja2 import Undefined, pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from postbackd.config import TemplateFormat
from postbackd.templates.errors import TemplateFault, running_template_line
from postbackd.templates.runtime import note_undefined

_CONTENT_TYPES: dict[str, str] = {
    "json": "application/json",
    "xml": "application/xml",
    "text": "text/plain; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8; header=present",
}

EMIT = "_postbackd_emit"
MARK_SAFE = "_postbackd_safe"
DATA = "_postbackd_data"

_SURROGATE = re.compile("[\ud800-\udfff]")
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
# xml: TAB/LF/CR as character references, so they survive attribute-value normalisation too;
# html: only CR (a parser would turn CR LF into LF), newlines stay readable.
_XML_TABLE = str.maketrans({**_XML_ENTITIES, "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"})
_HTML_TABLE = str.maketrans({**_XML_ENTITIES, "\r": "&#13;"})


class Safe(str):
    """Text already in the template's output format: inserted verbatim, never escaped again.

    Operations on it (``~``, filters) give a plain str again, which is escaped: the safe
    failure is double escaping, never a broken payload.
    """

    __slots__ = ()


def content_type_for(format: TemplateFormat) -> str:
    """The Content-Type a rendered body of `format` is sent with."""
    return _CONTENT_TYPES[format]


def plain_text(value: Any) -> str:
    """A value as text, before escaping (see the module docstring for the rules)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Undefined):
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        return json_text(value)
    return str(value)


def json_text(value: Any, indent: int | None = None) -> str:
    """`value` as JSON text (UTF-8 characters kept; lone surrogates as \\u escapes)."""
    scalar = _SCALAR_TEXT.get(type(value))
    if scalar is not None:
        return scalar(value)
    if isinstance(value, Undefined):
        str(value)
        return "null"
    try:
        text = json.dumps(
            value, ensure_ascii=False, allow_nan=False, indent=indent, default=_json_default
        )
    except ValueError as exc:
        raise TemplateFault(f"tojson: {exc}") from None
    return _escape_surrogates(text)


def _float_text(value: float) -> str:
    if not math.isfinite(value):
        raise TemplateFault(f"tojson: Out of range float values are not JSON compliant: {value!r}")
    return float.__repr__(value)


# The scalars of event data, written as `json.dumps` would without building an encoder for
# each: tojson runs for nearly every value of a JSON template.
_SCALAR_TEXT: dict[type, Callable[[Any], str]] = {
    str: lambda value: (
        encode_basestring(value)
        if value.isascii()
        else _escape_surrogates(encode_basestring(value))
    ),
    int: int.__repr__,
    float: _float_text,
    bool: lambda value: "true" if value else "false",
    type(None): lambda value: "null",
}


def _json_default(value: Any) -> Any:
    if isinstance(value, Undefined):
        str(value)
        return None
    if isinstance(value, Mapping):
        return dict(value)
    return plain_text(value)


def _escape_surrogates(text: str) -> str:
    """A lone surrogate cannot be encoded as UTF-8; JSON can carry it as a \\u escape."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def escape_json(text: str) -> str:
    """The inside of a JSON string literal holding `text`."""
    return _escape_surrogates(json.dumps(text, ensure_ascii=False)[1:-1])


def escape_xml(
    text: str, *, html: bool = False, variable: str | None = None, line: int | None = None
) -> str:
    """`text` XML-escaped; a character XML 1.0 cannot carry is an error naming the variable."""
    bad = _XML_ILLEGAL.search(text)
    if bad is not None:
        what = f"the value of {{{{ {variable} }}}}" if variable else "a value"
        raise TemplateFault(
            f"{what} contains U+{ord(bad.group()):04X}, a character XML 1.0 cannot carry; "
            "fix the event data or remove it in the template (e.g. with | replace)",
            variable=variable,
            line=line if line is not None else running_template_line(),
        )
    return text.translate(_HTML_TABLE if html else _XML_TABLE)


def escape_csv(text: str) -> str:
    """`text` as one RFC 4180 field: quoted, with quotes doubled, when it needs to be.

    Leading or trailing spaces are quoted too, so that an import that trims unquoted fields
    keeps them.
    """
    if _CSV_SPECIAL.search(text) is None and text == text.strip(" "):
        return text
    return '"' + text.replace('"', '""') + '"'


_CSV_SPECIAL = re.compile('[,"\r\n]')


def escaper(format: TemplateFormat) -> Callable[[str, str | None, int | None], str]:
    """The function that escapes text for `format`, given the variable and line for errors."""
    if format == "json":
        return lambda text, variable, line: escape_json(text)
    if format == "csv":
        return lambda text, variable, line: escape_csv(text)
    if format in ("xml", "html"):
        html = format == "html"
        return lambda text, variable, line: escape_xml(
            text, html=html, variable=variable, line=line
        )
    return lambda text, variable, line: text


def format_filters(format: TemplateFormat) -> dict[str, Callable[..., Any]]:
    """The filters that implement escaping for `format` (they replace Jinja's own)."""
    escape = escaper(format)
    markup_is_safe = format in ("xml", "html")

    def emit(value: Any, variable: str, line: int) -> str:
        if isinstance(value, Safe):
            return value
        if markup_is_safe and isinstance(value, Markup):
            return str(value)
        if isinstance(value, Undefined):
            note_undefined(f"undefined variable {variable!r}", line)
            return ""
        return escape(plain_text(value), variable, line)

    def raw(value: Any) -> Safe:
        return value if isinstance(value, Safe) else Safe(plain_text(value))

    def tojson(value: Any, indent: int | None = None) -> Safe:
        text = json_text(value, indent)
        return Safe(text if format in ("json", "text") else escape(text, None, None))

    def escape_filter(value: Any) -> Safe:
        return value if isinstance(value, Safe) else Safe(escape(plain_text(value), None, None))

    @pass_context
    def data(context: Context, text: str) -> str:
        # Template text; taking the context keeps Jinja from folding it into a constant, so
        # each piece of output keeps its template line (see `output`).
        return text

    return {
        EMIT: emit,
        MARK_SAFE: raw,
        DATA: data,
        "raw": raw,
        "safe": raw,
        "tojson": tojson,
        "e": escape_filter,
        "escape": escape_filter,
        "forceescape": escape_filter,
    }
