"""What the configuration loader reports: diagnostics with file and line, and the error type.

The loader never stops at the first problem: every finding is collected as a `Diagnostic`, so
one run of ``postbackd check`` shows them all. `ConfigError` carries them when any is an error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    """One finding: where (file and 1-based line; 0 when the whole file is meant) and what."""

    path: Path
    line: int
    message: str
    severity: Severity = "error"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; `diagnostics` holds every error (and warning) found."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "warning")


@dataclass
class Reporter:
    """Collects diagnostics while one configuration directory is validated."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, path: Path, line: int, message: str) -> None:
        self.diagnostics.append(Diagnostic(path, line, message, "error"))

    def warning(self, path: Path, line: int, message: str) -> None:
        self.diagnostics.append(Diagnostic(path, line, message, "warning"))

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        """Report again what an earlier load found (the loader's caches keep findings)."""
        self.diagnostics.extend(diagnostics)

    @property
    def failed(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def sorted(self) -> tuple[Diagnostic, ...]:
        return tuple(sorted(self.diagnostics, key=lambda d: (str(d.path), d.line)))


def did_you_mean(word: str, choices: Iterable[str], *, quote: str = '"') -> str:
    """`` (did you mean "x"?)`` for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {quote}{close[0]}{quote}?)" if close else ""
