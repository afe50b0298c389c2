"""The typed settings reader: what the core reads its own tables with, offered to plugins.

`SettingsReader` is the protocol a plugin's ``read_settings(reader)`` receives (public in
`postbackd.plugin`). `Reader` holds the typed reads, written once; where a problem goes is a
subclass's business, so what `check` reports and what building a plugin refuses can never
differ:

- `postbackd.config.table.Table` reports each problem at its key's file:line (``check``,
  start, reload), through the loader's `Reporter`;
- `MappingReader` collects them, for a plugin built from a plain mapping (the daemon builds
  plugins from tables the loader has accepted; a plugin's own tests build it from a dict), and
  `read_mapping` raises one ValueError listing them all.

Each read returns a usable default after reporting a problem, so reading goes on and every
problem is found in one pass.
"""

from __future__ import annotations

import datetime
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from postbackd import units
from postbackd.config.model import parse_listen
from postbackd.config.report import did_you_mean

T = TypeVar("T")


class SettingsReader(Protocol):
    """Typed reads from one settings table (``[sources.NAME]``, ``[deliveries.NAME]``).

    Every read reports a problem itself — at the key's file:line when reading a file, in one
    ValueError when reading a mapping (`read_mapping`) — and returns its default, so a
    ``read_settings`` reads on and every problem is found in one pass. Values are the table's
    with secret references expanded; a relative `path_value` resolves against the directory of
    the file that holds it. `error` and `warning` report a problem of the plugin's own (one
    key against another) at `key`, or at the table when no key is given.
    """

    @property
    def label(self) -> str:
        """How messages name the table: ``[sources.amqp]``."""
        ...

    @property
    def data(self) -> Mapping[str, Any]:
        """The table itself, for what the typed reads do not cover (``"key" in reader.data``)."""
        ...

    def check_keys(self, allowed: Collection[str]) -> None:
        """Each key not in `allowed` is an error, with a "did you mean"."""

    def string(
        self, key: str, default: str | None = None, *, required: bool = False
    ) -> str | None: ...

    def boolean(self, key: str, default: bool) -> bool: ...

    def integer(
        self, key: str, default: int, *, minimum: int = 1, maximum: int | None = None
    ) -> int: ...

    def duration(self, key: str, default: float) -> float:
        """``"30s"``, ``"5m"``, ``"1h30m"`` or a number of seconds → seconds."""
        ...

    def size(self, key: str, default: int) -> int:
        """``"64MiB"``, ``"512KiB"`` or a number of bytes → bytes."""
        ...

    def choice(self, key: str, choices: Sequence[str], default: str) -> str: ...

    def strings(self, key: str, *, required: bool = False) -> list[str] | None: ...

    def path_value(self, key: str) -> Path | None:
        """A path, absolute: a relative one resolves against its file's directory."""
        ...

    def listen(self, key: str, default: str) -> str:
        """A ``"host:port"`` to listen on (``"[::1]:8787"`` for IPv6), as written."""
        ...

    def token(self, key: str) -> str | None:
        """A bearer token; a blank one (which would leave its routes open) is an error."""
        ...

    def secret_failed(self, *key: str | int) -> bool:
        """Whether a secret reference at or under `key` failed (and is reported already)."""
        ...

    def shown(self, *key: str | int) -> str:
        """The value at `key` as written (secret references unexpanded), for messages."""
        ...

    def error(self, message: str, *key: str | int) -> None: ...

    def warning(self, message: str, *key: str | int) -> None: ...


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


def dig(node: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        node = node[part]
    return node


class Reader(ABC):
    """The typed reads of `SettingsReader`, over `data`; subclasses say where problems go
    (`error`, `warning`), how a value was written (`shown`), which secrets failed, and the
    `directory` a relative path resolves against."""

    label: str
    data: dict[str, Any]

    @property
    @abstractmethod
    def directory(self) -> Path: ...

    @abstractmethod
    def error(self, message: str, *key: str | int) -> None: ...

    @abstractmethod
    def warning(self, message: str, *key: str | int) -> None: ...

    @abstractmethod
    def shown(self, *key: str | int) -> str: ...

    @abstractmethod
    def secret_failed(self, *key: str | int) -> bool: ...

    def say(self, message: str, key: Sequence[str | int]) -> str:
        return f"{self.label} {key_text(key)}: {message}" if key else f"{self.label}: {message}"

    def check_keys(self, allowed: Collection[str]) -> None:
        for key in self.data:
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

    def integer(
        self, key: str, default: int, *, minimum: int = 1, maximum: int | None = None
    ) -> int:
        value = self.typed(key, int, "an integer", default)
        if value < minimum:
            self.error(f"must be at least {minimum}, got {value}", key)
            return default
        if maximum is not None and value > maximum:
            self.error(f"must be at most {maximum}, got {value}", key)
            return default
        return value

    def duration(self, key: str, default: float) -> float:
        return self._unit(key, default, units.parse_duration, 'a duration like "30s"')

    def size(self, key: str, default: int) -> int:
        return self._unit(key, default, units.parse_size, 'a size like "64MiB"')

    def _unit(self, key: str, default: Any, parse: Callable[[Any], Any], expected: str) -> Any:
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
        value = self.string(key)
        if value is None:
            return None
        if not value.strip():
            self.error("must not be empty", key)
            return None
        return (self.directory / value).resolve()

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

    def listen(self, key: str, default: str) -> str:
        value = self.string(key)
        if value is None:
            return default
        try:
            parse_listen(value)
        except ValueError as exc:
            self.error(str(exc), key)
            return default
        return value

    def token(self, key: str) -> str | None:
        """A bearer token setting; one that is (or resolves to) blank is refused.

        An empty token would read as "no token" and leave the routes it guards open, which is
        never what whoever wrote ``token = "${env:X}"`` meant: X is set but empty.
        """
        value = self.string(key)
        if value is None or value.strip() or self.secret_failed(key):
            return value
        written = self.shown(key)
        source = f"{written} resolves to" if "${" in written else "is"
        self.error(
            f"{source} an empty string, which would leave the routes it guards open: set a "
            f"non-empty token (e.g. export the variable with a value) or remove {key}",
            key,
        )
        return None


class MappingReader(Reader):
    """A `SettingsReader` over a plain mapping, which collects its `problems`.

    The mapping is what the daemon hands a plugin (secrets expanded, path settings already
    absolute) or what a test writes; a relative path resolves against `directory` (default:
    the working directory). Warnings are the loader's to show (``check``, reload): building a
    plugin stops for errors only, so they are dropped here.
    """

    def __init__(
        self, settings: Mapping[str, Any], label: str, directory: Path | None = None
    ) -> None:
        self.label = label
        self.data = dict(settings)
        self._directory = directory
        self.problems: list[str] = []

    @property
    def directory(self) -> Path:
        return self._directory or Path.cwd()

    def error(self, message: str, *key: str | int) -> None:
        self.problems.append(self.say(message, key))

    def warning(self, message: str, *key: str | int) -> None:
        pass

    def shown(self, *key: str | int) -> str:
        return repr(dig(self.data, key))

    def secret_failed(self, *key: str | int) -> bool:
        return False  # the mapping holds values, not references


def read_mapping(
    read: Callable[[SettingsReader], T],
    settings: Mapping[str, Any],
    label: str,
    *,
    directory: Path | None = None,
) -> T:
    """`read` (a plugin's ``read_settings``) over a plain mapping; `label` names the table
    (``"[sources.amqp]"``). Raises ValueError listing every problem, one per line."""
    reader = MappingReader(settings, label, directory)
    value = read(reader)
    if reader.problems:
        raise ValueError("\n".join(reader.problems))
    return value
