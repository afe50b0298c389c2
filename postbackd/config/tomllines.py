"""Line numbers for TOML tables and keys, which `tomllib` does not give.

`TomlLines.scan(text)` walks the text of a file that `tomllib` has already accepted and maps
every key path to the line it is written on: ``("daemon", "spool")``, ``("trigger", 2)`` for
the third ``[[trigger]]`` header, ``("trigger", 2, "options", "headers", "X-Api-Key")`` for a key
inside an inline table, ``("trigger", 2, "retry_schedule", 1)`` for an array element. Lookups
fall back to the nearest enclosing key or table, so an error can always point somewhere useful.

`TomlLines.lazy(text)` answers the same for less. Loading needs the line of every table header
(each item carries its `Location`) but the line of a key only when there is something to say
about it; so the headers are found in one regex-driven pass (strings, comments and one-level
values skipped in C), and the text is walked key by key only when a key is first asked for.

`declared_names(text)` is the rough reading of a file that does *not* parse: which customer
ids and template names it seems to declare, so references into it can be spared a cascade of
"unknown customer" errors.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = ",]}\n#"
_UNICODE_DIGITS = {"u": 4, "U": 8}
_BASIC_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}

_STRING_OR_COMMENT = (
    r'"""(?:[^"\\]|\\.|"(?!""))*+"""(?:"{1,2}(?!"))?'
    r"|'''(?:[^']|'(?!''))*+'''(?:'{1,2}(?!'))?"
    r'|"(?:[^"\\\n]|\\.)*+"'
    r"|'[^'\n]*+'"
    r"|\#[^\n]*+"
)
# Everything up to the next bracket or brace that is neither inside a string or comment nor
# part of a one-level array or inline table written after "=" (most values are): only table
# headers and nested values are left for Python to look at.
_SKIP = re.compile(
    rf"(?:{_STRING_OR_COMMENT}"
    rf"|=[ \t]*+[\[{{](?:{_STRING_OR_COMMENT}|[^\"'\#\[\]{{}}]++)*+[\]}}]"
    r"|[^\"'\#\[\]{}=]++|=)*+",
    re.S,
)
_TABLE_HEADER = re.compile(r"\[\[?[ \t]*([A-Za-z0-9_.-]+)[ \t]*\]")


class TomlLines:
    """Key path → 1-based line number for one TOML document.

    Made by `scan` (every key at once) or `lazy` (headers at once, keys on first need); both
    answer `line_of` alike. Not a frozen value, since the full map may be filled in later; a
    race between two threads filling it in costs a second scan, never a wrong line.
    """

    def __init__(self, text: str, lines: Mapping[KeyPath, int] | None = None) -> None:
        self._text = text
        self._lines = lines
        self._headers: Mapping[KeyPath, int] = {}

    @classmethod
    def scan(cls, text: str) -> TomlLines:
        return cls(text, _scan(text))

    @classmethod
    def lazy(cls, text: str) -> TomlLines:
        found = cls(text)
        found._headers = _header_lines(text) or {}
        return found

    @property
    def lines(self) -> Mapping[KeyPath, int]:
        """Every key path recorded (scanning the text now if that was not done yet)."""
        if self._lines is None:
            self._lines = _scan(self._text)
        return self._lines

    def line_of(self, *path: str | int) -> int:
        """The line of `path`, else of its nearest recorded parent; 0 when nothing matches."""
        key = tuple(path)
        line = self._headers.get(key)
        if line is not None:
            return line
        lines = self.lines
        while key:
            line = lines.get(key)
            if line is not None:
                return line
            key = key[:-1]
        return 0


def _scan(text: str) -> dict[KeyPath, int]:
    scanner = _Scanner(text)
    try:
        scanner.document()
    except (IndexError, ValueError):
        pass  # keep what was found: a line number is a help, never a reason to fail
    return scanner.lines


def _header_lines(text: str) -> dict[KeyPath, int] | None:
    """The line of each table a header defines, keyed by the table's concrete path.

    Only the path a header defines is kept, not the parents it names (``("a",)`` of
    ``[a.b]``): those may have been written before by a dotted key, which only the full scan
    sees, whereas no key can define a header's own table before the header in a document
    `tomllib` accepts. So the full scan gives the same line for every path kept here. None
    when a header is beyond this pass (a quoted or spaced key): the full scan answers then.
    """
    scanner = _Scanner(text)
    found: dict[KeyPath, int] = {}
    depth = 0
    pos, end = 0, len(text)
    line, line_pos = 1, 0
    while True:
        match = _SKIP.match(text, pos)
        pos = match.end() if match else pos
        if pos >= end:
            return found
        ch = text[pos]
        if ch in "]}":
            depth -= 1
            pos += 1
            continue
        line_start = text.rfind("\n", 0, pos) + 1
        if ch == "{" or depth or text[line_start:pos].strip(" \t"):
            depth += 1
            pos += 1
            continue
        header = _TABLE_HEADER.match(text, pos)
        if header is None:
            return None
        line += text.count("\n", line_pos, pos)
        line_pos = pos
        array = text.startswith("[[", pos)
        path = scanner.record_header(header.group(1).split("."), array, line)
        found[path] = line
        pos = header.end() + (1 if array else 0)


class _Scanner:
    """A small TOML reader that records where keys are, not what they hold."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._newlines: list[int] | None = None
        self.lines: dict[KeyPath, int] = {}
        self.table_counts: dict[KeyPath, int] = {}

    def line(self, pos: int | None = None) -> int:
        if self._newlines is None:
            self._newlines = [match.start() for match in re.finditer("\n", self.text)]
        return bisect.bisect_left(self._newlines, self.pos if pos is None else pos) + 1

    def peek(self, count: int = 1) -> str:
        return self.text[self.pos : self.pos + count]

    def document(self) -> None:
        table: KeyPath = ()
        while self.skip_blank(newlines=True):
            if self.peek() == "[":
                table = self.header()
            else:
                self.key_value(table)
            self.skip_blank(newlines=False)

    def skip_blank(self, *, newlines: bool) -> bool:
        """Skip spaces, comments and (optionally) newlines; False at the end of the text."""
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            elif ch == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return True
        return False

    def header(self) -> KeyPath:
        line = self.line()
        array = self.peek(2) == "[["
        self.pos += 2 if array else 1
        parts = self.key()
        self.pos += 2 if array else 1
        return self.record_header(parts, array, line)

    def record_header(self, parts: list[str], array: bool, line: int) -> KeyPath:
        """Record a ``[a.b]`` or ``[[a.b]]`` header at `line`; the path of the table it defines."""
        concrete: KeyPath = ()
        for index, part in enumerate(parts):
            concrete += (part,)
            self.lines.setdefault(concrete, line)
            if array and index == len(parts) - 1:
                count = self.table_counts.get(concrete, 0)
                self.table_counts[concrete] = count + 1
                concrete += (count,)
            elif concrete in self.table_counts:
                concrete += (self.table_counts[concrete] - 1,)
        self.lines.setdefault(concrete, line)
        return concrete

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            ch = self.peek()
            if ch == '"':
                parts.append(self.basic_string())
            elif ch == "'":
                end = self.text.index("'", self.pos + 1)
                parts.append(self.text[self.pos + 1 : end])
                self.pos = end + 1
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if match is None:
                    raise ValueError(f"no key at offset {self.pos}")
                parts.append(match.group())
                self.pos = match.end()
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return parts
            self.pos += 1

    def key_value(self, table: KeyPath) -> None:
        line = self.line()
        parts = self.key()
        for depth in range(1, len(parts) + 1):
            self.lines.setdefault(table + tuple(parts[:depth]), line)
        self.pos += 1  # "="
        self.value(table + tuple(parts))

    def value(self, path: KeyPath) -> None:
        self.skip_blank(newlines=False)
        ch = self.peek()
        if self.peek(3) in ('"""', "'''"):
            self.multiline_string(self.peek(3))
        elif ch == '"':
            self.basic_string()
        elif ch == "'":
            self.pos = self.text.index("'", self.pos + 1) + 1
        elif ch == "[":
            self.array(path)
        elif ch == "{":
            self.inline_table(path)
        else:
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in _SCALAR_END:
                self.pos += 1
            if self.pos == start:
                raise ValueError(f"no value at offset {start}")

    def array(self, path: KeyPath) -> None:
        self.pos += 1
        index = 0
        while self.skip_blank(newlines=True) and self.peek() != "]":
            self.lines.setdefault((*path, index), self.line())
            self.value((*path, index))
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.pos += 1
                index += 1
        self.pos += 1

    def inline_table(self, path: KeyPath) -> None:
        self.pos += 1
        while self.skip_blank(newlines=True) and self.peek() != "}":
            self.key_value(path)
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.pos += 1
        self.pos += 1

    def basic_string(self) -> str:
        """Read a one-line basic string and return its unescaped text."""
        text = self.text
        pos = self.pos + 1
        out: list[str] = []
        while text[pos] != '"':
            if text[pos] == "\\":
                escape = text[pos + 1]
                digits = _UNICODE_DIGITS.get(escape, 0)
                if digits:
                    out.append(chr(int(text[pos + 2 : pos + 2 + digits], 16)))
                else:
                    out.append(_BASIC_ESCAPES.get(escape, escape))
                pos += 2 + digits
            else:
                out.append(text[pos])
                pos += 1
        self.pos = pos + 1
        return "".join(out)

    def multiline_string(self, quote: str) -> None:
        text = self.text
        pos = self.pos + 3
        while True:
            if quote == '"""' and text[pos] == "\\":
                pos += 2
                continue
            if text.startswith(quote, pos):
                end = pos + 3
                while end < len(text) and end - pos < 5 and text[end] == quote[0]:
                    end += 1
                self.pos = end
                return
            pos += 1


_HEADER = re.compile(r"^\s*\[\[\s*(customer|template)\s*\]\]")
_OTHER_HEADER = re.compile(r"^\s*\[")
_NAME_KEY = re.compile(r"""^\s*(id|name)\s*=\s*(?:"([^"\\]*)"|'([^']*)')""")
_NAME_KEYS = {"customer": "id", "template": "name"}


def declared_names(text: str) -> dict[str, set[str]]:
    """The names a (possibly broken) file seems to declare, by kind: ``{"customer": {"acme"}}``.

    A line-by-line guess for a file `tomllib` rejected: good enough to avoid blaming other files
    for references into it, never used to build configuration.
    """
    found: dict[str, set[str]] = {kind: set() for kind in _NAME_KEYS}
    kind: str | None = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            kind = header.group(1)
            continue
        if _OTHER_HEADER.match(line):
            kind = None
            continue
        match = _NAME_KEY.match(line)
        if kind and match and match.group(1) == _NAME_KEYS[kind]:
            found[kind].add(match.group(2) if match.group(2) is not None else match.group(3))
    return found
