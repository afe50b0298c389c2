"""Reading a file named by the configuration: regular files only, and never without bound.

``body_file`` and ``${file:…}`` may point anywhere an admin (or a careless copy) points them:
a FIFO would block the loader forever and ``/dev/zero`` would be read until memory runs out.
The file is opened without blocking, judged by what it *is* (``fstat`` on the open file, so it
cannot be swapped in between), and at most `limit` bytes are read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

TEMPLATE_FILE_LIMIT = 1024 * 1024
SECRET_FILE_LIMIT = 64 * 1024


class NotReadable(ValueError):
    """The path is not a regular file, or is larger than allowed; the message says which."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "something else"


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them.

    Raises NotReadable for anything but a regular file and for a file larger than `limit`;
    OSError (FileNotFoundError, PermissionError, …) as ``open`` does.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotReadable(f"is {_kind(mode)}, not a file: {path}")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise NotReadable(f"larger than {limit} bytes (is it the right file?): {path}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_regular_text(path: Path, limit: int) -> str:
    """`read_regular_file` decoded as UTF-8, newlines made ``\\n`` (as ``Path.read_text``);
    UnicodeDecodeError when it is not UTF-8."""
    text = read_regular_file(path, limit).decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
