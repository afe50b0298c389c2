"""Writes a file into a directory: a temporary name in the same directory, the bytes, fsync,
an atomic rename onto the final name, then fsync of the directory so the rename survives a
power cut. A file sent again (after a crash) has the same name and bytes and replaces itself.

Options: ``path`` (required, absolute: the directory), ``create`` (default false: make the
directory and its parents when missing; otherwise a missing directory is an error an
operator fixes — a share that is not mounted must not fill the local disk), ``mode`` (the
file's permission bits as an octal string, default ``"0640"``), ``timeout`` (the whole write,
default 60s).
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postbackd.config import Trigger
from postbackd.deliveries.filenames import target_name, temporary_name
from postbackd.plugin import ConnectionCheck, Delivery, Outcome
from postbackd.units import parse_duration

OPTION_NAMES = ("path", "create", "mode", "timeout")
DEFAULT_MODE = 0o640


@dataclass(frozen=True)
class DirectoryOptions:
    path: Path
    create: bool
    mode: int


def parse_options(options: Mapping[str, Any]) -> tuple[DirectoryOptions | None, list[str]]:
    problems = [
        f"options.{key} is not a directory option (known: {', '.join(OPTION_NAMES)})"
        for key in options
        if key not in OPTION_NAMES
    ]
    path = options.get("path")
    if not isinstance(path, str) or not path:
        problems.append('options.path is required: the directory, e.g. "/srv/share/outgoing"')
    elif not os.path.isabs(path):
        problems.append(f"options.path {path!r} must be an absolute path")
    create = options.get("create", False)
    if not isinstance(create, bool):
        problems.append("options.create must be true or false")
    mode_text = options.get("mode", f"{DEFAULT_MODE:04o}")
    mode = DEFAULT_MODE
    try:
        mode = int(str(mode_text), 8)
        if not 0 <= mode <= 0o777:
            raise ValueError
    except ValueError:
        problems.append(f'options.mode {mode_text!r} must be octal permission bits like "0640"')
    if "timeout" in options:
        try:
            parse_duration(options["timeout"])
        except (ValueError, TypeError) as exc:
            problems.append(f"options.timeout: {exc}")
    if problems:
        return None, problems
    return DirectoryOptions(Path(str(path)), bool(create), mode), []


class DirectoryDelivery:
    """The ``directory`` delivery plugin."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = settings

    def validate_options(self, options: Mapping[str, Any]) -> list[str]:
        return parse_options(options)[1]

    def destination(self, options: Mapping[str, Any]) -> str:
        return f"directory:{options.get('path', '')}"

    async def deliver(self, delivery: Delivery, options: Mapping[str, Any]) -> Outcome:
        parsed, problems = parse_options(options)
        if parsed is None:
            return Outcome.fail("; ".join(problems))
        name = target_name(delivery)
        target = parsed.path / name
        request = {"method": "WRITE", "url": f"file://{target}", "bytes": len(delivery.body)}
        try:
            await asyncio.to_thread(_write_file, parsed, name, delivery)
        except OSError as exc:
            return Outcome.retry(_explain(exc, parsed), request=request)
        return Outcome.ok(detail=str(target), request=request, response={"written": str(target)})

    async def check_connections(self, triggers: Sequence[Trigger]) -> list[ConnectionCheck]:
        """`check --connect`: each trigger's directory exists (or may be created) and this
        user may write into it — nothing written."""
        checks = []
        for trigger in sorted(triggers, key=lambda t: t.name):
            parsed, problems = parse_options(trigger.options)
            if parsed is None:
                checks.append(ConnectionCheck(False, f"{trigger.name}: {'; '.join(problems)}"))
                continue
            problem = await asyncio.to_thread(_unwritable, parsed)
            text = f"{trigger.name}: {problem or f'{parsed.path} is writable'}"
            checks.append(ConnectionCheck(problem is None, text))
        return checks

    async def close(self) -> None:
        return None


def _unwritable(options: DirectoryOptions) -> str | None:
    """Why a file could not be written into the directory now, or None."""
    directory = options.path
    while options.create and not directory.exists() and directory != directory.parent:
        directory = directory.parent  # created at the first write: its parent must take it
    if not directory.is_dir():
        return _explain(OSError(errno.ENOENT, "missing"), options)
    if not os.access(directory, os.W_OK | os.X_OK):
        return _explain(OSError(errno.EACCES, "denied"), options)
    return None


def _write_file(options: DirectoryOptions, name: str, delivery: Delivery) -> None:
    directory = options.path
    if options.create:
        directory.mkdir(parents=True, exist_ok=True)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        temporary = temporary_name(name, delivery)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, options.mode, dir_fd=dir_fd)
        try:
            view = memoryview(delivery.body)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError:
            os.unlink(temporary, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _explain(exc: OSError, options: DirectoryOptions) -> str:
    where = options.path
    if exc.errno == errno.ENOENT:
        return (
            f"directory {where} does not exist: create it (or mount the share), or set "
            "options.create = true"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write in {where}: give the postbackd user write access"
    if exc.errno == errno.ENOSPC:
        return f"no space left on the file system of {where}"
    if exc.errno == errno.ENOTDIR:
        return f"{where} is not a directory"
    return f"cannot write into {where}: {exc.strerror or exc}"
