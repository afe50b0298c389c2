"""Reading one configuration file: bytes → TOML → a `ConfFile` with secret references expanded.

Everything here works on one file alone, so the per-file cache (`postbackd.config.cache`) and
the directory reader (`postbackd.config.files`) can both build on it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postbackd.config.reader import key_text
from postbackd.config.report import Diagnostic, Reporter
from postbackd.config.secrets import SecretResolver
from postbackd.config.table import ConfFile
from postbackd.config.tomllines import KeyPath, TomlLines, declared_names
from postbackd.redaction import is_secret_name

ITEM_TABLES = ("customer", "template", "trigger", "lookup", "sla")
PLUGIN_TABLES = ("sources", "deliveries")
_TEMPLATE_SOURCES = ("body", "subject")
_NOT_SETTINGS = frozenset({"customer", "template", "lookup", "sla"})
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)|\s*\(at end of document\)")


def item_name(kind: str, table: Any) -> str | None:
    """The name an item declares: a customer's ``id``, anything else's ``name``."""
    name = table.get("id" if kind == "customer" else "name") if isinstance(table, dict) else None
    return name if isinstance(name, str) else None


def label_of(raw: Mapping[str, Any], path: KeyPath) -> tuple[str, KeyPath]:
    """How messages name the table at the start of `path`, and the key path left inside it."""
    head = path[0] if path else ""
    if head in ITEM_TABLES and len(path) > 1 and isinstance(path[1], int):
        name = item_name(str(head), raw[head][path[1]])
        label = f'[[{head}]] "{name}"' if name else f"[[{head}]] #{path[1] + 1}"
        return label, path[2:]
    if head in PLUGIN_TABLES and len(path) > 1:
        return f"[{head}.{path[1]}]", path[2:]
    return f"[{head}]", path[1:]


@dataclass(frozen=True)
class ParsedFile:
    """One file read and parsed: all of it that does not depend on the environment.

    `raw` is None when the file could not be read or parsed, and `problems` say why (they are
    reported again by every load that reads it); `declared` holds the names such a file seems
    to declare. `content` is the bytes as read (None for a pending text), so that a cache can
    tell a rewritten file from a touched one. `may_reference` is False only when no string of
    the file can hold a secret reference (no ``$`` and no unicode escape in the text), which
    spares such a file the walk that expands references.
    """

    path: Path
    raw: dict[str, Any] | None
    lines: TomlLines | None = None
    content: bytes | None = None
    may_reference: bool = True
    problems: tuple[Diagnostic, ...] = ()
    declared: Mapping[str, frozenset[str]] = field(default_factory=dict)


def read_file(path: Path) -> ParsedFile:
    try:
        content = path.read_bytes()
    except OSError as exc:
        return unreadable(path, exc)
    return parse_content(path, content)


def unreadable(path: Path, exc: OSError) -> ParsedFile:
    return ParsedFile(
        path, None, problems=(_error(path, 0, f"cannot read: {exc.strerror or exc}"),)
    )


def parse_content(path: Path, content: bytes) -> ParsedFile:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 text (byte {exc.start}): save the file as UTF-8"
        return ParsedFile(path, None, content=content, problems=(_error(path, line, message),))
    return parse_text(path, text, content)


def parse_text(path: Path, text: str, content: bytes | None = None) -> ParsedFile:
    try:
        raw = tomllib.loads(text)
    except RecursionError:
        message = (
            f"nested deeper than the TOML reader can follow (arrays or inline tables "
            f"{_DEEP} levels deep or more): flatten it"
        )
        return ParsedFile(
            path, None, content=content, problems=(_error(path, _deep_line(text), message),)
        )
    except tomllib.TOMLDecodeError as exc:
        message = f"TOML syntax error: {_reason(exc)}"
        declared = {kind: frozenset(names) for kind, names in declared_names(text).items()}
        return ParsedFile(
            path,
            None,
            content=content,
            problems=(_error(path, _error_line(str(exc), text), message),),
            declared=declared,
        )
    may_reference = "$" in text or "\\u" in text or "\\U" in text
    return ParsedFile(path, raw, TomlLines.lazy(text), content, may_reference)


_DEEP = 100


def _deep_line(text: str) -> int:
    """The line where brackets first nest `_DEEP` deep (strings not told apart: a hint)."""
    depth = 0
    line = 1
    for char in text:
        if char == "\n":
            line += 1
        elif char in "[{":
            depth += 1
            if depth >= _DEEP:
                return line
        elif char in "]}":
            depth = max(0, depth - 1)
    return 1


def _error(path: Path, line: int, message: str) -> Diagnostic:
    return Diagnostic(path, line, message, "error")


def _error_line(message: str, text: str) -> int:
    match = _TOML_POSITION.search(message)
    if match and match.group(1):
        return int(match.group(1))
    return max(1, text.count("\n") + (0 if text.endswith("\n") else 1))


def _reason(exc: tomllib.TOMLDecodeError) -> str:
    message = str(exc)
    match = _TOML_POSITION.search(message)
    if match and match.group(2):
        return f"{message[: match.start()]} (column {match.group(2)})"
    return _TOML_POSITION.sub("", message)


def _is_template_source(key: KeyPath) -> bool:
    return len(key) == 3 and key[0] == "template" and key[2] in _TEMPLATE_SOURCES


def conf_file(parsed: ParsedFile, resolver: SecretResolver | None, report: Reporter) -> ConfFile:
    """A parsed file with secret references expanded, each failure reported at its key."""
    path, raw, lines = parsed.path, parsed.raw, parsed.lines
    assert raw is not None and lines is not None
    directory = path.parent.absolute()
    written = tuple(marked_secrets(raw))
    if resolver is None or not parsed.may_reference:
        return ConfFile(
            path=path, directory=directory, raw=raw, data=raw, lines=lines, secret_values=written
        )
    resolved: list[tuple[KeyPath, str]] = []
    data, errors = resolver.expand_tree(raw, directory, skip=_is_template_source, resolved=resolved)
    for key, exc in errors:
        label, rest = label_of(raw, key)
        report.error(
            path,
            lines.line_of(*key),
            f"{label} {key_text(rest)}: cannot resolve {exc.reference}: {exc.reason}",
        )
    return ConfFile(
        path=path,
        directory=directory,
        raw=raw,
        data=data,
        lines=lines,
        secret_errors=tuple(key for key, _ in errors),
        secret_values=(*written, *resolved),
    )


def marked_secrets(raw: Any, path: KeyPath = (), marked: bool = False) -> list[tuple[KeyPath, str]]:
    """Strings written in clear under a secret-looking key (``token``, ``password``, a
    ``secret`` list, an ``X-Api-Key`` header …), with their key paths: masked like references.

    Only settings are judged: customers, templates and lookup tables hold names and data (a
    lookup's ``key``), and of a trigger only its ``options``.
    """
    found: list[tuple[KeyPath, str]] = []
    if path and path[0] in _NOT_SETTINGS:
        return found
    if len(path) >= 3 and path[0] == "trigger" and path[2] != "options":
        return found
    if isinstance(raw, str):
        if marked and "${" not in raw:
            found.append((path, raw))
    elif isinstance(raw, dict):
        for key, value in raw.items():
            found.extend(marked_secrets(value, (*path, key), marked or is_secret_name(key)))
    elif isinstance(raw, list):
        for index, value in enumerate(raw):
            found.extend(marked_secrets(value, (*path, index), marked))
    return found
