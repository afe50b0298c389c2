"""Typed reads from one TOML table that report problems at the line of the key.

`ConfFile` is one parsed file (its text as written and with secret references expanded);
`Table` is a table inside it. Each read returns a usable default after reporting a problem, so
validation goes on and every error is found in one pass. Values shown in messages come from the
file as written, never from an expanded secret.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from postbackd import units
from postbackd.config.model import Location
from postbackd.config.report import Diagnostic, Reporter, did_you_mean
from postbackd.config.tomllines import KeyPath, TomlLines

T = TypeVar("T")


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


def kind_of(value: Any) -> str:
    """A TOML type in words, for "expected X, got Y"."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.date | datetime.time):
        return "a date-time"
    return type(value).__name__


def key_text(key: Sequence[str | int]) -> str:
    """``("retry_schedule", 2)`` → ``retry_schedule[2]``; ``("a", "b")`` → ``a.b``."""
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _dig(node: Any, path: KeyPath) -> Any:
    for part in path:
        node = node[part]
    return node


class Table:
    """A table at `path` in `file`; `label` names it in messages (``[[trigger]] "acme"``).

    `report` is where problems go; `built` is the item the loader built from this table, kept
    while the table is (see `ConfFile.merged`).
    """

    def __init__(self, file: ConfFile, path: KeyPath, label: str, report: Reporter) -> None:
        self.file = file
        self.path = path
        self.label = label
        self.report = report
        self.raw: dict[str, Any] = _dig(file.raw, path)
        self.data: dict[str, Any] = _dig(file.data, path)
        self.built: Built | None = None

    @property
    def location(self) -> Location:
        return Location(self.file.path, self.line())

    def line(self, *key: str | int) -> int:
        return self.file.lines.line_of(*self.path, *key)

    def error(self, message: str, *key: str | int) -> None:
        self.report.error(self.file.path, self.line(*key), self._say(message, key))

    def warning(self, message: str, *key: str | int) -> None:
        self.report.warning(self.file.path, self.line(*key), self._say(message, key))

    def _say(self, message: str, key: Sequence[str | int]) -> str:
        return f"{self.label} {key_text(key)}: {message}" if key else f"{self.label}: {message}"

    def shown(self, *key: str | int) -> str:
        """The value at `key` as written in the file (references unexpanded), for messages."""
        return repr(_dig(self.raw, key))

    def secret_values(self) -> list[str]:
        """The secret values at or under this table (see `ConfFile.secret_values`)."""
        prefix = self.path
        return [value for path, value in self.file.secret_values if path[: len(prefix)] == prefix]

    def secret_failed(self, *key: str | int) -> bool:
        """Whether a secret reference at or under `key` failed (already reported)."""
        prefix = (*self.path, *key)
        return any(path[: len(prefix)] == prefix for path in self.file.secret_errors)

    def check_keys(self, allowed: Collection[str]) -> None:
        for key in self.raw:
            if key not in allowed:
                hint = did_you_mean(key, allowed)
                known = "" if hint else f" (known: {', '.join(sorted(allowed))})"
                self.error(f'unknown key "{key}"{hint}{known}', key)

    def typed(self, key: str, kind: type[T], expected: str, default: T) -> T:
        if key not in self.data:
            return default
        value = self.data[key]
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            self.error(f"expected {expected}, got {kind_of(value)} ({self.shown(key)})", key)
            return default
        return value

    def require(self, key: str) -> bool:
        if key in self.data:
            return True
        self.error(f'missing required key "{key}"')
        return False

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        if required and not self.require(key):
            return None
        value = self.typed(key, str, "a string", None)
        if value is None:
            return default
        if required and not value.strip():
            self.error("must not be empty", key)
            return None
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return self.typed(key, bool, "true or false", default)

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        value = self.typed(key, int, "an integer", default)
        if value < minimum:
            self.error(f"must be at least {minimum}, got {value}", key)
            return default
        return value

    def duration(self, key: str, default: float) -> float:
        return self._unit(key, default, units.parse_duration, 'a duration like "30s"')

    def size(self, key: str, default: int) -> int:
        return self._unit(key, default, units.parse_size, 'a size like "64MiB"')

    def _unit(self, key: str, default: Any, parse: Any, expected: str) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.error(f"expected {expected}, got {kind_of(value)}", key)
            return default
        try:
            return parse(value)
        except ValueError as exc:
            self.error(str(exc), key)
            return default

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.string(key)
        if value is None:
            return default
        if value not in choices:
            hint = did_you_mean(value, choices)
            self.error(f"expected one of {', '.join(choices)}; got {self.shown(key)}{hint}", key)
            return default
        return value

    def path_value(self, key: str) -> Path | None:
        """A path setting, resolved against the directory of this file when relative."""
        value = self.string(key)
        if value is None:
            return None
        if not value.strip():
            self.error("must not be empty", key)
            return None
        return (self.file.directory / value).resolve()

    def strings(self, key: str, *, required: bool = False) -> list[str] | None:
        """An array of strings; each element of the wrong type is reported at its line."""
        if required and not self.require(key):
            return None
        value = self.typed(key, list, "an array of strings", None)
        if value is None:
            return None
        good = True
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.error(f"expected a string, got {kind_of(item)}", key, index)
                good = False
        return list(value) if good else None

    def table(self, key: str) -> dict[str, Any] | None:
        return self.typed(key, dict, "a table", None)
