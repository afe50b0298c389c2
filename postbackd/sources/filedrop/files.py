"""The file side of the file-drop source: which names count, reading and checking a dropped
file, and where it goes afterwards (``processed/``, ``rejected/`` with a ``NAME.error``).

Every function here blocks (file I/O) and is called through ``asyncio.to_thread``.

A ``.json`` file holds one event or an array of events and is all-or-nothing, like an HTTP
request. A ``.jsonl`` file holds one event per line; its good lines are accepted and only its bad
lines are set aside, so one typo does not hold back a day's export.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from postbackd.events import Event, EventRejected, decode_json, parse_event, parse_events

PROCESSED = "processed"
REJECTED = "rejected"
ERROR_SUFFIX = ".error"
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_EVENTS_PER_FILE = 100_000
READ_CHUNK = 1024 * 1024
_IGNORED_SUFFIXES = (".tmp", ".part")


class DropKind(StrEnum):
    JSON = ".json"
    JSONL = ".jsonl"


def drop_kind(name: str) -> DropKind | None:
    """The kind of a file by its name, or None for names to leave alone (for now).

    Names starting with ``.`` or ending in ``.tmp``/``.part`` are files still being written:
    they count once renamed.
    """
    if name.startswith(".") or name.endswith(_IGNORED_SUFFIXES):
        return None
    for kind in DropKind:
        if name.endswith(kind.value) and len(name) > len(kind.value):
            return kind
    return None


@dataclass(frozen=True)
class DroppedEvent:
    """One valid event and where it stood: ``line`` for .jsonl, else None."""

    event: Event
    line: int | None = None
    raw: bytes = b""


@dataclass(frozen=True)
class BadLine:
    line: int
    raw: bytes
    error: str


@dataclass(frozen=True)
class DroppedFile:
    """What a dropped file holds: its valid events, its bad lines, or why it is rejected whole."""

    path: Path
    kind: DropKind
    events: tuple[DroppedEvent, ...] = ()
    bad_lines: tuple[BadLine, ...] = ()
    errors: tuple[str, ...] = ()
    unread: bool = False  # rejected for what the entry is (a symlink, a FIFO), never opened

    @property
    def rejected_whole(self) -> bool:
        return bool(self.errors)


def list_drops(directory: Path) -> list[Path]:
    """Files in `directory` that are ready-named drops, oldest first."""
    found: list[tuple[float, str, Path]] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if drop_kind(entry.name) is None:
                continue
            try:
                # Not only regular files: a symlink, FIFO or device with a drop name is found
                # too, to be moved to rejected/ (read_drop never opens it).
                if not entry.is_dir(follow_symlinks=False):
                    found.append(
                        (entry.stat(follow_symlinks=False).st_mtime, entry.name, Path(entry.path))
                    )
            except FileNotFoundError:
                continue
    return [path for _mtime, _name, path in sorted(found)]


def read_drop(path: Path, max_bytes: int = MAX_FILE_BYTES) -> DroppedFile | None:
    """Read and check one file; None when it is gone (already handled).

    Only a regular file whose directory entry is in the drop directory itself is read: the
    entry is checked with ``lstat``, opened with ``O_NOFOLLOW | O_NONBLOCK`` (a symlink swapped
    in meanwhile fails, a FIFO cannot block the open) and checked again with ``fstat`` on what
    was opened. A symlink (to ``/dev/zero``, to a file elsewhere), a FIFO, a device or a socket
    is rejected whole *without being read* (`DroppedFile.unread`). At most `max_bytes` + 1
    bytes are read, whatever the size the file system reports.
    """
    kind = drop_kind(path.name)
    if kind is None:
        return None
    try:
        entry = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(entry.st_mode):
        return _not_read(path, kind, entry.st_mode)
    if entry.st_size > max_bytes:
        return _too_large(path, kind, entry.st_size, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.ENODEV):  # replaced by a link/special
            return _not_read(path, kind, None, f"it cannot be opened safely ({exc.strerror})")
        raise
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            return _not_read(path, kind, opened.st_mode)
        raw = _read_capped(fd, max_bytes)
    finally:
        os.close(fd)
    if raw is None:
        return _too_large(path, kind, None, max_bytes)
    if kind is DropKind.JSON:
        return _read_json(path, raw)
    return _read_jsonl(path, raw)


def _read_capped(fd: int, max_bytes: int) -> bytes | None:
    """The file's bytes, or None as soon as more than `max_bytes` arrive (a growing file)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, min(READ_CHUNK, max_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            return None


def _too_large(path: Path, kind: DropKind, size: int | None, max_bytes: int) -> DroppedFile:
    what = f"{size} bytes" if size is not None else "still growing when read"
    return DroppedFile(
        path,
        kind,
        errors=(
            f"the file is {what}, more than max_file_size ({max_bytes} bytes): split it into "
            "smaller files, or raise [sources.filedrop] max_file_size",
        ),
    )


def _not_read(path: Path, kind: DropKind, mode: int | None, why: str = "") -> DroppedFile:
    """A directory entry that is not a regular file: rejected without opening what it names."""
    if not why:
        what = _KINDS_OF_ENTRY.get(stat.S_IFMT(mode or 0), "not a regular file")
        why = f"it is {what}"
    return DroppedFile(
        path,
        kind,
        errors=(
            f"not read: {why}; only regular files written into the directory are read (never "
            "through a symlink, never a FIFO, device or socket): copy the file itself in",
        ),
        unread=True,
    )


_KINDS_OF_ENTRY = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def _read_json(path: Path, raw: bytes) -> DroppedFile:
    try:
        events = parse_events(raw, max_events=MAX_EVENTS_PER_FILE)
    except EventRejected as exc:
        return DroppedFile(path, DropKind.JSON, errors=(str(exc),))
    return DroppedFile(path, DropKind.JSON, events=tuple(DroppedEvent(e) for e in events))


def _read_jsonl(path: Path, raw: bytes) -> DroppedFile:
    good: list[DroppedEvent] = []
    bad: list[BadLine] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if not line.strip():
            continue
        try:
            event = parse_event(decode_json(line))
        except EventRejected as exc:
            bad.append(BadLine(number, line, str(exc)))
        else:
            good.append(DroppedEvent(event, number, line))
    if len(good) + len(bad) > MAX_EVENTS_PER_FILE:
        return DroppedFile(
            path,
            DropKind.JSONL,
            errors=(
                f"too many lines: {len(good) + len(bad)} > {MAX_EVENTS_PER_FILE}; split the file",
            ),
        )
    if not good:
        errors = tuple(f"line {b.line}: {b.error}" for b in bad) or ("the file holds no events",)
        return DroppedFile(path, DropKind.JSONL, errors=errors)
    return DroppedFile(path, DropKind.JSONL, events=tuple(good), bad_lines=tuple(bad))


def reject_whole(directory: Path, path: Path, errors: tuple[str, ...], note: str = "") -> Path:
    """Move a bad file to ``rejected/`` and write ``NAME.error`` beside it; returns its new path."""
    target = unique_target(directory / REJECTED, path.name)
    header = [
        f"# {path}: rejected at {_now()}; nothing in it was accepted"
        + (" (a .json file is all-or-nothing)." if path.suffix == DropKind.JSON else "."),
    ]
    if note:
        header.append(f"# {note}")
    header.append(
        f"# Fix it and drop it again: write it elsewhere, then rename it into {directory}"
    )
    _write_atomic(_error_path(target), "\n".join([*header, *errors]) + "\n")
    os.rename(path, target)
    return target


def reject_lines(directory: Path, path: Path, bad: list[BadLine], accepted: int) -> Path:
    """Write the bad lines of a .jsonl to ``rejected/NAME`` with ``NAME.error`` listing them."""
    target = unique_target(directory / REJECTED, path.name)
    header = [
        f"# {path}: {len(bad)} line(s) rejected at {_now()}; the other {accepted} event(s) "
        "were accepted.",
        f"# {target.name} holds only the rejected lines; line numbers are those of {path.name}.",
        f"# Fix them and drop the file again: write it elsewhere, then rename it into {directory}",
    ]
    _write_atomic(
        _error_path(target),
        "\n".join([*header, *(f"line {b.line}: {b.error}" for b in bad)]) + "\n",
    )
    _write_atomic(target, b"\n".join(b.raw for b in bad) + b"\n")
    return target


def finish(directory: Path, path: Path, keep_seconds: float) -> Path | None:
    """Move an accepted file to ``processed/`` (mtime set to now), or delete it (keep 0s)."""
    if keep_seconds <= 0:
        path.unlink(missing_ok=True)
        return None
    target = unique_target(directory / PROCESSED, path.name)
    os.rename(path, target)
    os.utime(target)
    return target


def sweep_processed(directory: Path, keep_seconds: float) -> int:
    """Delete files in ``processed/`` older than `keep_seconds`; returns how many went."""
    cutoff = time.time() - keep_seconds
    removed = 0
    with os.scandir(directory / PROCESSED) as entries:
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime <= cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def unique_target(folder: Path, name: str) -> Path:
    """`folder/name`, or with a time stamp before the suffix when that name is taken."""
    target = folder / name
    if not os.path.lexists(target) and not os.path.lexists(_error_path(target)):
        return target
    kind = drop_kind(name)
    suffix = kind.value if kind is not None else ""
    stem = name[: len(name) - len(suffix)]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    for attempt in range(1000):
        candidate = folder / f"{stem}.{stamp}{f'-{attempt}' if attempt else ''}{suffix}"
        if not os.path.lexists(candidate) and not os.path.lexists(_error_path(candidate)):
            return candidate
    raise FileExistsError(f"{folder}: no free name for {name}; clean up the folder")


def _error_path(target: Path) -> Path:
    return target.with_name(target.name + ERROR_SUFFIX)


def _write_atomic(path: Path, content: str | bytes) -> None:
    data = content.encode() if isinstance(content, str) else content
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
