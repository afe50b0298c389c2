"""Finding and reading the files of a configuration directory.

Which files count (DESIGN §3): every ``*.toml`` under the directory, recursively, sorted by
path; a file or directory whose name starts with ``.`` and a name ending in ``~``, ``.tmp`` or
``.swp`` is skipped, so editor swap files, ``customer add``'s temporary file and VCS directories
are never read. Each file is parsed on its own: one that fails is reported with its line, and the
names it seems to declare are kept so references into it do not cascade into more errors.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postbackd.config_report import Reporter
from postbackd.config_table import ConfFile, key_text
from postbackd.secrets import SecretResolver
from postbackd.tomllines import KeyPath, TomlLines, declared_names

IGNORED_SUFFIXES = ("~", ".tmp", ".swp")
ITEM_TABLES = ("customer", "template", "trigger", "lookup")
PLUGIN_TABLES = ("sources", "deliveries")
_TEMPLATE_SOURCES = ("body", "subject")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)|\s*\(at end of document\)")


def is_ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


def config_files(conf_dir: Path) -> list[Path]:
    """The files the loader reads from `conf_dir`, in the order it reads them."""
    found = []
    for path in conf_dir.rglob("*.toml"):
        relative = path.relative_to(conf_dir)
        if any(is_ignored(part) for part in relative.parts) or not path.is_file():
            continue
        found.append(path)
    return sorted(found)


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


@dataclass
class ReadResult:
    """The files that parsed, and what the loader knows about the ones that did not."""

    files: list[ConfFile] = field(default_factory=list)
    broken: list[Path] = field(default_factory=list)
    broken_names: dict[str, set[str]] = field(default_factory=dict)


def read_files(
    paths: list[Path],
    pending: Mapping[Path, str],
    resolver: SecretResolver | None,
    report: Reporter,
) -> ReadResult:
    """Parse every file (pending texts stand in for files not yet written) and expand secrets.

    Without a `resolver`, secret references are left as written.
    """
    result = ReadResult()
    for path in sorted({*paths, *pending}):
        text = pending.get(path)
        if text is None:
            text = _read_text(path, report)
        if text is None:
            result.broken.append(path)
            continue
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            report.error(path, _error_line(str(exc), text), f"TOML syntax error: {_reason(exc)}")
            result.broken.append(path)
            for kind, names in declared_names(text).items():
                result.broken_names.setdefault(kind, set()).update(names)
            continue
        result.files.append(_conf_file(path, raw, text, resolver, report))
    return result


def _read_text(path: Path, report: Reporter) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        report.error(path, 0, f"cannot read: {exc.strerror or exc}")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        report.error(path, line, f"not UTF-8 text (byte {exc.start}): save the file as UTF-8")
        return None


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


def _conf_file(
    path: Path, raw: dict[str, Any], text: str, resolver: SecretResolver | None, report: Reporter
) -> ConfFile:
    """One parsed file with secret references expanded, each failure reported at its key."""
    lines = TomlLines.scan(text)
    directory = path.parent.absolute()

    def is_template_source(key: KeyPath) -> bool:
        return len(key) == 3 and key[0] == "template" and key[2] in _TEMPLATE_SOURCES

    if resolver is None:
        return ConfFile(path=path, directory=directory, raw=raw, data=raw, lines=lines)
    data, errors = resolver.expand_tree(raw, directory, skip=is_template_source)
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
    )
