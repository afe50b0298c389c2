"""An sftp trigger's `[trigger.options]`: checked once for `check`, parsed at each attempt.

- ``host`` (required), ``port`` (default 22), ``username`` (required).
- ``password``, or ``private_key`` (the key's text, e.g. ``"${file:/etc/postbackd/id_ed25519}"``)
  with an optional ``passphrase``: one of them is required (never the agent or ~/.ssh: a
  daemon's credentials are what its configuration says).
- ``host_key`` — the server's public key as a known_hosts line (``host ssh-ed25519 AAAA…``)
  or as ``ssh-ed25519 AAAA…``, or ``host_key_fingerprint`` — ``SHA256:…`` as
  ``ssh-keygen -lf`` prints it. One is required: a file is never uploaded to an unverified
  server, and a key that does not match is refused before any credential is sent.
- ``directory`` — where on the server (default: the login directory).
- ``timeout`` (whole upload, default 60s), ``connect_timeout`` (default 10s).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from postbackd.units import parse_duration

OPTION_NAMES = (
    "host",
    "port",
    "username",
    "password",
    "private_key",
    "passphrase",
    "host_key",
    "host_key_fingerprint",
    "directory",
    "timeout",
    "connect_timeout",
)
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
MISSING_ASYNCSSH = (
    "the sftp delivery needs the asyncssh package: install postbackd[sftp] "
    "(pip install 'postbackd[sftp]')"
)
_KEY_TYPES = ("ssh-", "ecdsa-", "sk-")


@dataclass(frozen=True)
class SftpOptions:
    host: str
    port: int
    username: str
    directory: str
    pinned: frozenset[str]  # SHA256 fingerprints the server's host key must have
    timeout: float
    connect_timeout: float
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)


def parse_options(options: Mapping[str, Any]) -> tuple[SftpOptions | None, list[str]]:
    """The options, or None and every problem (never with a secret's value in it)."""
    try:
        import asyncssh
    except ImportError:
        return None, [MISSING_ASYNCSSH]
    problems = [
        f"options.{key} is not an sftp option (known: {', '.join(OPTION_NAMES)})"
        for key in options
        if key not in OPTION_NAMES
    ]
    host = _text(options, "host", problems, required=True)
    username = _text(options, "username", problems, required=True)
    password = _text(options, "password", problems)
    private_key = _text(options, "private_key", problems)
    passphrase = _text(options, "passphrase", problems)
    directory = _text(options, "directory", problems) or "."
    port = options.get("port", 22)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        problems.append(f"options.port must be a port number 1-65535, got {port!r}")
    if password is None and private_key is None:
        problems.append(
            "set options.password or options.private_key (e.g. "
            '"${file:/etc/postbackd/sftp_key}") to log in'
        )
    if private_key is not None:
        try:
            asyncssh.import_private_key(private_key, passphrase)
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            problems.append(f"options.private_key cannot be read: {exc}")
    pinned = _pinned(options, problems, asyncssh)
    timeout = _duration(options, "timeout", DEFAULT_TIMEOUT, problems)
    connect_timeout = _duration(options, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, problems)
    if problems or host is None or username is None:
        return None, problems
    return (
        SftpOptions(
            host=host,
            port=int(port),
            username=username,
            directory=directory,
            pinned=pinned,
            timeout=timeout,
            connect_timeout=connect_timeout,
            password=password,
            private_key=private_key,
            passphrase=passphrase,
        ),
        [],
    )


def _pinned(options: Mapping[str, Any], problems: list[str], asyncssh: Any) -> frozenset[str]:
    pinned: set[str] = set()
    line = _text(options, "host_key", problems)
    if line is not None:
        words = line.split()
        if words and not words[0].startswith(_KEY_TYPES):
            words = words[1:]  # a known_hosts line: the host names come first
        try:
            key = asyncssh.import_public_key(" ".join(words[:2]))
            pinned.add(key.get_fingerprint("sha256"))
        except (asyncssh.KeyImportError, ValueError) as exc:
            problems.append(
                f"options.host_key is not a public key ({exc}): paste the server's line from "
                '`ssh-keyscan HOST` or its key file, e.g. "ssh-ed25519 AAAA..."'
            )
    fingerprint = _text(options, "host_key_fingerprint", problems)
    if fingerprint is not None:
        if not fingerprint.startswith("SHA256:") or len(fingerprint) < 20:
            problems.append(
                f"options.host_key_fingerprint {fingerprint!r} is not a SHA256 fingerprint: "
                'write it as `ssh-keygen -lf KEY` prints it, "SHA256:..."'
            )
        else:
            pinned.add(fingerprint)
    if line is None and fingerprint is None:
        problems.append(
            "pin the server's host key: set options.host_key (a known_hosts line) or "
            'options.host_key_fingerprint ("SHA256:..."); a file is never uploaded to a '
            "server that is not verified"
        )
    return frozenset(pinned)


def _text(
    options: Mapping[str, Any], key: str, problems: list[str], *, required: bool = False
) -> str | None:
    value = options.get(key)
    if value is None:
        if required:
            problems.append(f"options.{key} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"options.{key} must be a non-empty string")
        return None
    return value


def _duration(options: Mapping[str, Any], key: str, default: float, problems: list[str]) -> float:
    value = options.get(key)
    if value is None:
        return default
    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError) as exc:
        problems.append(f"options.{key}: {exc}")
        return default
    if seconds <= 0:
        problems.append(f"options.{key} must be longer than 0s")
    return seconds
