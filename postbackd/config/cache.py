"""Loading a configuration directory again without parsing the files that did not change.

A reload of thousands of customer files would otherwise read, parse and build every one of
them each time. `ConfigCache` remembers, per file, its parse (`ParsedFile`), the `ConfFile` made
from it and — kept on that ConfFile — the items built from its tables. Everything that looks
across files (duplicate names, references between items, one ``[daemon]`` per directory,
delivery names, trigger options checked by their plugin) is still done on the whole directory
at every load, as are secret references: see `conf_file`.

When a file counts as unchanged: its `FileStamp` — device, inode, size, mtime and ctime in
nanoseconds — is the one seen when it was read. A file rewritten in place keeps its inode but
gets a new ctime (which no tool can set back); one replaced by a rename has another inode.
What a stamp cannot show is a second write within the same timestamp tick of the file system
(a jiffy on ext4, up to 2 s on FAT), so — as git does with its index — a file whose mtime or
ctime was within `RACY_NS` of the moment it was read is "racy": it is read again at the next
load and its bytes compared, and parsed again only if they differ. A file that vanished is
forgotten; one that cannot be read is reported at every load, never cached.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postbackd.config.parse import ParsedFile, conf_file, parse_content, unreadable
from postbackd.config.report import Reporter
from postbackd.config.secrets import SecretResolver
from postbackd.config.table import ConfFile

RACY_NS = 2_000_000_000
"""How near "now" a file's timestamps may be for its stamp to be trusted at the next load."""


@dataclass(frozen=True)
class FileStamp:
    """What `os.stat` says about a file that changes whenever its content may have."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, stat: os.stat_result) -> FileStamp:
        return cls(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@dataclass
class _Entry:
    stamp: FileStamp
    parsed: ParsedFile
    racy: bool
    conf: ConfFile | None = None


class ConfigCache:
    """Per-file results of earlier loads, for `load_config(..., cache=)`.

    One load uses it at a time (`lock`). `last_read` and `last_parsed` name the files whose
    bytes the latest load read and parsed: the others came from the cache.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.last_read: list[str] = []
        self.last_parsed: list[str] = []
        self._entries: dict[str, _Entry] = {}
        self._cwd = ""

    def begin(self, paths: list[str]) -> None:
        """Start a load of `paths`: forget the files no longer among them."""
        cwd = os.getcwd()
        if cwd != self._cwd:  # relative paths now name other files
            self._entries.clear()
            self._cwd = cwd
        present = set(paths)
        for path in [path for path in self._entries if path not in present]:
            del self._entries[path]
        self.last_read = []
        self.last_parsed = []

    def tables(self) -> list[tuple[str, Any]]:
        """Every top-level TOML value of the files the last load read, as written (secret
        references not expanded), as (key, value) pairs file by file in name order."""
        found: list[tuple[str, Any]] = []
        for name in sorted(self._entries):
            raw = self._entries[name].parsed.raw
            if raw is not None:
                found.extend(raw.items())
        return found

    def parsed(self, name: str) -> ParsedFile:
        """The parse of file `name`, from the cache unless the file may have changed."""
        try:
            stat = os.stat(name)
        except OSError as exc:
            self._entries.pop(name, None)
            return unreadable(Path(name), exc)
        stamp = FileStamp.of(stat)
        entry = self._entries.get(name)
        if entry is not None and entry.stamp == stamp and not entry.racy:
            return entry.parsed
        now = time.time_ns()
        path = Path(name)
        try:
            content = path.read_bytes()
        except OSError as exc:
            self._entries.pop(name, None)
            return unreadable(path, exc)
        self.last_read.append(name)
        if entry is not None and entry.parsed.content == content:
            parsed, conf = entry.parsed, entry.conf
        else:
            parsed, conf = parse_content(path, content), None
            self.last_parsed.append(name)
        racy = max(stat.st_mtime_ns, stat.st_ctime_ns) >= now - RACY_NS
        self._entries[name] = _Entry(stamp, parsed, racy, conf)
        return parsed

    def conf_file(
        self, name: str, parsed: ParsedFile, resolver: SecretResolver | None, report: Reporter
    ) -> ConfFile:
        """The ConfFile of a parse this cache gave, the one of the last load when it is the same.

        Secret references are resolved at every load, as without a cache: a ``${file:...}``
        or a plugin's secret may change while the TOML does not. When every value comes out
        as last time (and the same references fail), the last ConfFile is given again, with
        the items already built from it; otherwise a new one, and its items are built anew.
        """
        entry = self._entries.get(name)
        if entry is None or entry.parsed is not parsed:
            return conf_file(parsed, resolver, report)
        last = entry.conf
        expands = resolver is not None and parsed.may_reference
        if last is not None and not expands and last.data is last.raw:
            return last
        conf = conf_file(parsed, resolver, report)
        if last is not None and last.data == conf.data and last.secret_errors == conf.secret_errors:
            return last
        entry.conf = conf
        return conf
