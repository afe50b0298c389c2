"""Mutual TLS to a receiver: a trigger's ``[trigger.options.tls]`` and the SSLContext it means.

Options (all optional; paths absolute, since options do not know which file they came from):

- ``client_cert`` — PEM file with the client certificate (and any intermediates after it);
  ``client_key`` — its private key, when not in the same file; ``key_password`` — the key's
  passphrase, as a secret reference (``"${credential:acme-key-pass}"``).
- ``ca`` — PEM bundle of the certificate authorities the receiver's certificate must chain to,
  instead of the system's: a receiver on a private CA.

`check_files` loads what `check` and every reload must vouch for (files present, readable,
PEM, key matching certificate, passphrase right) and says what is wrong with which file.
`TlsContexts` builds one context per option set and per state of its files (a renewed
certificate written in place is picked up at the next reload), off the event loop.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TLS_OPTION_NAMES = ("client_cert", "client_key", "key_password", "ca")
FILE_LIMIT = 4 * 1024 * 1024  # a CA bundle (the system's is ~200 KiB) or a certificate file
PEM_LIMIT = 1024 * 1024  # bytes of a certificate or key file looked at; PEM files are far smaller
CONTEXT_LIMIT = 256  # contexts kept across reloads; more (certificates renewed often) start afresh

FileState = tuple[int, int, int, int]  # device, inode, size, mtime_ns


@dataclass(frozen=True)
class TlsOptions:
    client_cert: Path | None = None
    client_key: Path | None = None
    key_password: str | None = None
    ca: Path | None = None

    @property
    def named_files(self) -> tuple[tuple[str, Path], ...]:
        """(option name, path) of each file given."""
        files = (("client_cert", self.client_cert), ("client_key", self.client_key))
        return tuple((n, p) for n, p in (*files, ("ca", self.ca)) if p is not None)

    def __repr__(self) -> str:  # the passphrase stays out of any repr that reaches a log
        shown = "***" if self.key_password is not None else None
        return (
            f"TlsOptions(client_cert={self.client_cert}, client_key={self.client_key}, "
            f"key_password={shown}, ca={self.ca})"
        )


def parse_tls(value: Any, errors: list[str]) -> TlsOptions | None:
    """``options.tls`` as `TlsOptions` (None when absent); problems appended as
    ``"options.tls.NAME: what to do"``."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        errors.append(
            'options.tls: expected a table, e.g. tls = { client_cert = "/etc/postbackd/'
            'tls/acme.pem", client_key = "/etc/postbackd/tls/acme.key" }'
        )
        return None
    before = len(errors)
    for name in value:
        if name not in TLS_OPTION_NAMES:
            known = ", ".join(TLS_OPTION_NAMES)
            errors.append(f"options.tls.{name}: unknown TLS option (known: {known})")
    cert, key, ca = (_path(value, name, errors) for name in ("client_cert", "client_key", "ca"))
    password = value.get("key_password")
    if password is not None and (not isinstance(password, str) or not password):
        errors.append(
            'options.tls.key_password: expected a non-empty string, e.g. "${credential:NAME}"'
        )
        password = None
    if cert is None and (key is not None or password is not None):
        name = "client_key" if key is not None else "key_password"
        errors.append(f"options.tls.{name}: given without client_cert; add the certificate")
    if cert is None and ca is None and len(errors) == before:
        errors.append("options.tls: empty; give client_cert (and client_key) and/or ca")
    if len(errors) > before:
        return None
    return TlsOptions(cert, key, password, ca)


def _path(table: Mapping[str, Any], name: str, errors: list[str]) -> Path | None:
    value = table.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        errors.append(f"options.tls.{name}: expected a file path string")
        return None
    path = Path(value)
    if not path.is_absolute():
        errors.append(
            f"options.tls.{name}: {value!r} is relative; write the absolute path "
            f"(e.g. /etc/postbackd/tls/{path.name})"
        )
        return None
    return path


def check_files(tls: TlsOptions) -> list[str]:
    """What is wrong with the files (``"options.tls.NAME: …"``): what `check` reports.

    Blocking file I/O: called while a configuration loads, off the event loop.
    """
    errors: list[str] = []
    for name, path in tls.named_files:
        if (problem := _unreadable(path)) is not None:
            errors.append(f"options.tls.{name}: {problem}")
    if errors:
        return errors
    try:
        build_context(tls)
    except TlsFileError as exc:
        errors.append(f"options.tls.{exc.option}: {exc.reason}")
    return errors


def _unreadable(path: Path) -> str | None:
    """Why `path` cannot be read as a certificate file, or None. Checked with stat before it
    is opened: opening a FIFO would block until someone writes to it."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return f"file not found: {path}"
    except PermissionError:
        return f"permission denied reaching {path} (can the daemon's user open its directory?)"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    mode = found.st_mode
    if stat.S_ISDIR(mode):
        return f"is a directory, not a file: {path}"
    if not stat.S_ISREG(mode):
        return f"not a regular file: {path}"
    size = found.st_size
    if size > FILE_LIMIT:
        return (
            f"{path} is {size:,} bytes; a certificate, key or CA bundle file is at most "
            f"{FILE_LIMIT // (1024 * 1024)} MiB"
        )
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # never blocks, even if swapped
    except PermissionError:
        return f"permission denied reading {path} (is it readable by the daemon's user?)"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    return None


class TlsFileError(Exception):
    """A TLS file that cannot be used: which option, and why (never the passphrase)."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"options.tls.{option}: {reason}")
        self.option = option
        self.reason = reason


def build_context(tls: TlsOptions) -> ssl.SSLContext:
    """A client context verifying the receiver (against `ca`, else the system's CAs) and
    presenting the client certificate; TlsFileError says which file is wrong.

    Blocking file I/O: run off the event loop.
    """
    if tls.ca is not None:
        try:
            context = ssl.create_default_context(cafile=str(tls.ca))
        except (ssl.SSLError, OSError) as exc:
            raise TlsFileError(
                "ca", f"{tls.ca} holds no usable PEM CA certificate ({_ssl_reason(exc)})"
            ) from None
    else:
        context = ssl.create_default_context()
    if tls.client_cert is None:
        return context
    _check_pem(tls)
    try:
        # A callable, never None: without one OpenSSL would prompt on the terminal for the
        # passphrase of an encrypted key, and a daemon would hang there.
        context.load_cert_chain(
            str(tls.client_cert),
            str(tls.client_key) if tls.client_key is not None else None,
            password=_passphrase(tls),
        )
    except _NoPassphrase:
        raise TlsFileError(
            "client_key",
            f"{tls.client_key or tls.client_cert} is encrypted; give its passphrase as "
            'key_password (a secret reference, e.g. "${credential:acme-key-pass}")',
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise _explain_chain_error(tls, exc) from None
    return context


class _NoPassphrase(Exception):
    """An encrypted key was met and no key_password is configured."""


def _passphrase(tls: TlsOptions) -> Callable[[], bytes]:
    password = tls.key_password

    def passphrase() -> bytes:
        if password is None:
            raise _NoPassphrase
        return password.encode()

    return passphrase


def _check_pem(tls: TlsOptions) -> None:
    """Say which file is not what it should be, where OpenSSL only says "PEM lib"."""
    assert tls.client_cert is not None
    cert = _head(tls.client_cert, "client_cert")
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise TlsFileError(
            "client_cert", f"{tls.client_cert} holds no PEM certificate (-----BEGIN CERTIFICATE)"
        )
    key_option = "client_key" if tls.client_key is not None else "client_cert"
    key_file = tls.client_key or tls.client_cert
    key = cert if tls.client_key is None else _head(key_file, key_option)
    if b"PRIVATE KEY-----" not in key:
        where = "" if tls.client_key is not None else "; give the key file as client_key"
        raise TlsFileError(key_option, f"{key_file} holds no PEM private key{where}")


def _head(path: Path, option: str) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(PEM_LIMIT)
    except OSError as exc:
        raise TlsFileError(option, f"cannot read {path}: {exc.strerror}") from None


def _explain_chain_error(tls: TlsOptions, exc: BaseException) -> TlsFileError:
    reason = _ssl_reason(exc)
    where = f"{tls.client_cert}" + (f" and {tls.client_key}" if tls.client_key else "")
    if "KEY_VALUES_MISMATCH" in reason.upper() or "key values mismatch" in str(exc):
        return TlsFileError(
            "client_key",
            f"{tls.client_key or tls.client_cert} is not the key of the certificate in "
            f"{tls.client_cert}; give the private key that belongs to it",
        )
    if tls.key_password is not None:
        return TlsFileError(
            "key_password",
            f"the passphrase does not decrypt the key in {tls.client_key or tls.client_cert} "
            f"({reason})",
        )
    return TlsFileError("client_cert", f"{where}: cannot be loaded ({reason})")


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class TlsContexts:
    """SSLContexts per option set and state of its files, built off the event loop.

    An SSLContext is costly to build and aiohttp pools connections per context, so every
    attempt of a trigger shares one; a reload with the same options and unchanged files keeps
    it, while a certificate renewed in place (same path, new content) gets a new one.
    """

    def __init__(self) -> None:
        self._contexts: dict[tuple[TlsOptions, tuple[FileState, ...]], ssl.SSLContext] = {}

    async def context(self, tls: TlsOptions) -> ssl.SSLContext:
        """The context for `tls`; TlsFileError when a file went bad since `check`."""
        return await asyncio.to_thread(self._context, tls)

    def _context(self, tls: TlsOptions) -> ssl.SSLContext:
        states: list[FileState] = []
        for name, path in tls.named_files:
            problem = _unreadable(path)
            if problem is not None:
                raise TlsFileError(name, problem)
            found = path.stat()
            states.append((found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns))
        key = (tls, tuple(states))
        context = self._contexts.get(key)
        if context is None:
            context = build_context(tls)
            if len(self._contexts) >= CONTEXT_LIMIT:
                self._contexts.clear()
            self._contexts[key] = context
        return context
