"""Secret references in configuration strings, resolved when the configuration is loaded.

A string may hold ``${env:NAME}`` (an environment variable), ``${file:PATH}`` (a file's text;
a relative PATH resolves against the directory of the TOML file that names it),
``${credential:NAME}`` (``$CREDENTIALS_DIRECTORY/NAME``, as systemd's ``LoadCredential=``
provides) or ``${SCHEME:REST}`` for a scheme a plugin resolves. ``$${`` writes a literal ``${``.
File and credential contents lose one trailing newline, since editors and ``echo`` add one.

Errors name the reference and why it failed, never the value: these are passwords and tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postbackd.config.bounded_read import SECRET_FILE_LIMIT, NotReadable, read_regular_text
from postbackd.config.tomllines import KeyPath

BUILTIN_SCHEMES = ("env", "file", "credential")

_TOKEN = re.compile(r"\$\$\{|\$\{([A-Za-z][A-Za-z0-9+.-]*):([^}]*)\}|\$\{([^}:]*)\}")

SchemeResolver = Callable[[str], str | None]
"""A plugin's resolver: given ``"scheme:rest"``, the secret; None when the scheme is not its own.

To report a secret that does not exist, raise an exception whose message says so (without the
secret).
"""


class SecretError(Exception):
    """A reference that could not be resolved: `reference` as written, `reason` in words."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"{reference}: {reason}")
        self.reference = reference
        self.reason = reason


@dataclass(frozen=True)
class SecretResolver:
    """Resolves references against an environment and, for other schemes, a plugin hook."""

    environ: Mapping[str, str]
    plugin: SchemeResolver | None = None

    def expand(self, text: str, base_dir: Path, found: list[str] | None = None) -> str:
        """`text` with every reference replaced by its value; SecretError for the first bad one.

        Each value a reference resolved to is appended to `found`: whatever came from a
        secret reference is masked by value wherever it could show (`postbackd.redaction`).
        """
        if "${" not in text:
            return text

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            reference = match.group(0)
            if match.group(1) is None:
                name = match.group(3)
                raise SecretError(
                    reference, f"no scheme: write ${{env:{name}}} (or $${{ for a literal ${{)"
                )
            value = self.resolve(match.group(1), match.group(2), base_dir)
            if found is not None:
                found.append(value)
            return value

        return _TOKEN.sub(replace, text)

    def resolve(self, scheme: str, rest: str, base_dir: Path) -> str:
        reference = f"${{{scheme}:{rest}}}"
        if scheme == "env":
            value = self.environ.get(rest)
            if value is None:
                raise SecretError(reference, f"environment variable {rest} is not set")
            return value
        if scheme == "file":
            return _read_secret_file(reference, base_dir / rest)
        if scheme == "credential":
            return self._credential(reference, rest)
        resolved: str | None
        if self.plugin is None:
            resolved = None
        else:
            try:
                resolved = self.plugin(f"{scheme}:{rest}")
            except Exception as exc:
                raise SecretError(reference, f"{type(exc).__name__}: {exc}") from None
        if resolved is None:
            raise SecretError(
                reference,
                f"unknown secret scheme {scheme!r} (known: {', '.join(BUILTIN_SCHEMES)}, "
                "and those of installed plugins)",
            )
        return resolved

    def _credential(self, reference: str, name: str) -> str:
        directory = self.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise SecretError(
                reference,
                "CREDENTIALS_DIRECTORY is not set: credentials come from systemd "
                f"(LoadCredential={name}:/path/to/secret in the unit)",
            )
        if not name or "/" in name or name in (".", ".."):
            raise SecretError(reference, "a credential name is a plain file name")
        return _read_secret_file(reference, Path(directory) / name)

    def expand_tree(
        self,
        value: Any,
        base_dir: Path,
        skip: Callable[[KeyPath], bool] | None = None,
        resolved: list[tuple[KeyPath, str]] | None = None,
    ) -> tuple[Any, list[tuple[KeyPath, SecretError]]]:
        """Expand references in every string of a nested value (tables, arrays).

        Returns the expanded copy and, for each failed reference, the key path to it (relative
        to `value`) and the error. A failed string, and any value whose path `skip` accepts, is
        kept as written. Each resolved secret is appended to `resolved` with its key path.
        """
        errors: list[tuple[KeyPath, SecretError]] = []

        def walk(node: Any, path: KeyPath) -> Any:
            if skip is not None and skip(path):
                return node
            if isinstance(node, str):
                found: list[str] = []
                try:
                    expanded = self.expand(node, base_dir, found)
                    if resolved is not None:
                        resolved.extend((path, secret) for secret in found)
                    return expanded
                except SecretError as exc:
                    errors.append((path, exc))
                    return node
            if isinstance(node, dict):
                return {key: walk(item, (*path, key)) for key, item in node.items()}
            if isinstance(node, list):
                return [walk(item, (*path, index)) for index, item in enumerate(node)]
            return node

        return walk(value, ()), errors


def _read_secret_file(reference: str, path: Path) -> str:
    try:
        text = read_regular_text(path, SECRET_FILE_LIMIT)
    except NotReadable as exc:
        raise SecretError(reference, str(exc)) from None
    except FileNotFoundError:
        raise SecretError(reference, f"file not found: {path}") from None
    except IsADirectoryError:
        raise SecretError(reference, f"is a directory, not a file: {path}") from None
    except PermissionError:
        raise SecretError(
            reference, f"permission denied reading {path} (is it readable by this user?)"
        ) from None
    except UnicodeDecodeError:
        raise SecretError(reference, f"not UTF-8 text: {path}") from None
    except OSError as exc:
        raise SecretError(reference, f"cannot read {path}: {exc.strerror}") from None
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text
