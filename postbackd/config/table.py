"""A table of a parsed file, read with the typed reads of `postbackd.config.reader`, each
problem reported at the line of its key.

`ConfFile` is one parsed file (its text as written and with secret references expanded);
`Table` is a table inside it. Each read returns a usable default after reporting a problem, so
validation goes on and every error is found in one pass. Values shown in messages come from the
file as written, never from an expanded secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postbackd.config.model import Location
from postbackd.config.reader import Reader, dig
from postbackd.config.report import Diagnostic, Reporter
from postbackd.config.tomllines import KeyPath, TomlLines


@dataclass(frozen=True)
class ConfFile:
    """One parsed configuration file.

    `path` is how messages name it (as the user gave the directory); `directory` is absolute,
    for resolving relative paths; `raw` is the TOML as written, `data` the same with secret
    references expanded; `secret_errors` lists the key paths whose references failed.
    `merged` keeps the loader's item tables of the file (with what was built from each): a
    cache that hands out the same ConfFile at the next load spares making them again.
    `secret_values` holds, with its key path, every value that came from a secret reference
    or was written under a secret-looking key: what `postbackd.redaction` masks by value.
    """

    path: Path
    directory: Path
    raw: dict[str, Any]
    data: dict[str, Any]
    lines: TomlLines
    secret_errors: tuple[KeyPath, ...] = ()
    secret_values: tuple[tuple[KeyPath, str], ...] = field(default=(), repr=False)
    merged: dict[str, ItemTables] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Built:
    """An item built from one table, and what building it reported."""

    value: Any
    diagnostics: tuple[Diagnostic, ...]


@dataclass(frozen=True)
class ItemTables:
    """The ``[[kind]]`` tables of one file, each with the name it declares (or None), and
    what reading them reported (entries that are not tables)."""

    tables: tuple[tuple[Table, str | None], ...]
    diagnostics: tuple[Diagnostic, ...]


class Table(Reader):
    """A table at `path` in `file`; `label` names it in messages (``[[trigger]] "acme"``).

    The typed reads are `Reader`'s; a problem is reported at the line of its key.

    `report` is where problems go; `built` is the item the loader built from this table, kept
    while the table is (see `ConfFile.merged`).
    """

    def __init__(self, file: ConfFile, path: KeyPath, label: str, report: Reporter) -> None:
        self.file = file
        self.path = path
        self.label = label
        self.report = report
        self.raw: dict[str, Any] = dig(file.raw, path)
        self.data: dict[str, Any] = dig(file.data, path)
        self.built: Built | None = None

    @property
    def directory(self) -> Path:
        return self.file.directory

    @property
    def location(self) -> Location:
        return Location(self.file.path, self.line())

    def line(self, *key: str | int) -> int:
        return self.file.lines.line_of(*self.path, *key)

    def error(self, message: str, *key: str | int) -> None:
        self.report.error(self.file.path, self.line(*key), self.say(message, key))

    def warning(self, message: str, *key: str | int) -> None:
        self.report.warning(self.file.path, self.line(*key), self.say(message, key))

    def shown(self, *key: str | int) -> str:
        """The value at `key` as written in the file (references unexpanded), for messages."""
        return repr(dig(self.raw, key))

    def secret_values(self) -> list[str]:
        """The secret values at or under this table (see `ConfFile.secret_values`)."""
        prefix = self.path
        return [value for path, value in self.file.secret_values if path[: len(prefix)] == prefix]

    def secret_failed(self, *key: str | int) -> bool:
        """Whether a secret reference at or under `key` failed (already reported)."""
        prefix = (*self.path, *key)
        return any(path[: len(prefix)] == prefix for path in self.file.secret_errors)
