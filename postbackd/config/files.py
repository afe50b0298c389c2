"""Finding and reading the files of a configuration directory.

Which files count (DESIGN §3): every ``*.toml`` under the directory, recursively, sorted by
path; a file or directory whose name starts with ``.`` and a name ending in ``~``, ``.tmp`` or
``.swp`` is skipped, so editor swap files, ``customer add``'s temporary file and VCS directories
are never read. Each file is parsed on its own: one that fails is reported with its line, and the
names it seems to declare are kept so references into it do not cascade into more errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from postbackd.config.cache import ConfigCache
from postbackd.config.parse import (
    conf_file,
    item_name,
    label_of,
    parse_text,
    read_file,
)
from postbackd.config.report import Reporter
from postbackd.config.secrets import SecretResolver
from postbackd.config.table import ConfFile, ItemTables, Table

IGNORED_SUFFIXES = ("~", ".tmp", ".swp")
_Found = tuple[tuple[str, ...], str]  # (parts below the directory, path)


def is_ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


def config_files(conf_dir: Path) -> list[Path]:
    """The files the loader reads from `conf_dir`, in the order it reads them."""
    return [Path(path) for path in config_paths(conf_dir)]


def config_paths(conf_dir: Path) -> list[str]:
    """`config_files` as strings (each as ``str()`` of its Path), cheaper by thousands."""
    found: list[_Found] = []
    base = os.fspath(conf_dir)
    _walk(base, "" if base == "." else base, (), found)
    found.sort(key=itemgetter(0))
    return [path for _, path in found]


def _walk(directory: str, prefix: str, parts: tuple[str, ...], found: list[_Found]) -> None:
    """As ``rglob("*.toml")`` does (no symlinked directory followed), ignored names pruned."""
    try:
        with os.scandir(directory) as listing:
            entries = list(listing)
    except PermissionError:
        return
    for entry in entries:
        name = entry.name
        if is_ignored(name):
            continue
        path = os.path.join(prefix, name)
        try:
            is_file = entry.is_file()
        except OSError:  # a symlink loop: kept, so that reading it reports why it cannot be read
            is_file = True
        if name.endswith(".toml") and is_file:
            found.append(((*parts, name), path))
        if entry.is_dir(follow_symlinks=False):
            _walk(path, path, (*parts, name), found)


def item_tables(file: ConfFile, key: str, value: list[Any]) -> ItemTables:
    """The tables of `file`'s ``[[key]]`` entries; what is not a table is reported."""
    found = Reporter()
    tables: list[tuple[Table, str | None]] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            where = file.lines.line_of(key, index)
            found.error(file.path, where, f"[[{key}]] entries must be tables")
            continue
        label, _ = label_of(file.raw, (key, index))
        tables.append((Table(file, (key, index), label, found), item_name(key, item)))
    return ItemTables(tuple(tables), tuple(found.diagnostics))


@dataclass
class ReadResult:
    """The files that parsed, and what the loader knows about the ones that did not."""

    files: list[ConfFile] = field(default_factory=list)
    broken: list[Path] = field(default_factory=list)
    broken_names: dict[str, set[str]] = field(default_factory=dict)


def read_files(
    paths: list[str],
    pending: Mapping[Path, str],
    resolver: SecretResolver | None,
    report: Reporter,
    cache: ConfigCache | None = None,
) -> ReadResult:
    """Parse every file (pending texts stand in for files not yet written) and expand secrets.

    `paths` are as `config_paths` gives them. Without a `resolver`, secret references are left
    as written. With a `cache`, files that did not change since its last load are not parsed
    again.
    """
    result = ReadResult()
    texts = {str(path): text for path, text in pending.items()}
    for name in sorted({*paths, *texts}, key=Path) if texts else paths:
        text = texts.get(name)
        if text is not None:
            parsed = parse_text(Path(name), text)
        elif cache is not None:
            parsed = cache.parsed(name)
        else:
            parsed = read_file(Path(name))
        report.extend(parsed.problems)
        if parsed.raw is None:
            result.broken.append(parsed.path)
            for kind, names in parsed.declared.items():
                result.broken_names.setdefault(kind, set()).update(names)
        elif cache is not None and text is None:
            result.files.append(cache.conf_file(name, parsed, resolver, report))
        else:
            result.files.append(conf_file(parsed, resolver, report))
    return result


def readable_spool_setting(conf_dir: Path) -> tuple[Path | None, bool]:
    """``[daemon] spool`` as far as the files that parse tell (None: not set in them), and
    whether any file is broken: what the read-only commands use to find the spool while the
    configuration has errors."""
    report = Reporter()
    read = read_files(config_paths(conf_dir), {}, None, report)
    for file in read.files:
        if isinstance(file.raw.get("daemon"), dict):
            table = Table(file, ("daemon",), "[daemon]", report)
            return table.path_value("spool"), bool(read.broken)
    return None, bool(read.broken)
