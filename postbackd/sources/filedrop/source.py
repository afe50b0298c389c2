"""The file-drop source: event files dropped into a directory are submitted, then moved away.

``[sources.filedrop]`` settings: ``directory`` (required; created when missing),
``keep_processed`` (default ``"7d"``; ``"0s"`` deletes a file as soon as its events are stored)
and ``max_file_size`` (default ``"64MiB"``: the most bytes read of one file; a larger file is
rejected).

Only regular files are read, never through a symlink, never a FIFO or a device (see
`files.read_drop`); reads run on a thread of their own (`reader`), so a read
that hangs neither blocks shutdown nor goes unnoticed: the source reports it in ``/readyz``.

A file is read once it is complete: when its writer closes it (inotify ``IN_CLOSE_WRITE``, as
after a plain ``cp``), when it is renamed into the directory (write-then-rename, the safe way to
drop a file), or — for whatever the watcher missed, and for files present at start-up — once
its size and mtime have stood still for `SETTLE_SECONDS`. Names starting with ``.`` or ending in
``.tmp``/``.part`` are ignored until renamed. The file format and what happens to bad input are
described in `postbackd.sources.filedrop.files`.

Only after every event of a file is committed to the spool does the file move to ``processed/``
(pruned after ``keep_processed``). When the spool cannot store now, the file stays where it is
and is tried again with backoff; events of it already stored are recognised by id, so a retry,
like a restart after a crash, never doubles a postback.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR
from typing import Any

from watchdog.observers.api import BaseObserver

from postbackd.events import EventRejected
from postbackd.logs import get_logger
from postbackd.plugin import (
    PluginContext,
    SettingsReader,
    SpoolUnavailable,
    Submit,
    count_rejected,
    read_mapping,
    submit_many,
)
from postbackd.sources.filedrop import files
from postbackd.sources.filedrop.files import BadLine, DropKind, DroppedFile
from postbackd.sources.filedrop.reader import ReadInHand, read_off_loop
from postbackd.sources.filedrop.watch import start_watching, stat_all, stop_watching
from postbackd.units import format_duration

log = get_logger("postbackd.sources.filedrop")

TICK_SECONDS = 0.5
SETTLE_SECONDS = 2.0
RESCAN_SECONDS = 30.0
SWEEP_SECONDS = 3600.0
RETRY_FIRST = 0.5
RETRY_MAX = 60.0
STOP_GRACE = 10.0
SUBMIT_BATCH = 500  # events of one file committed together (a file of 100,000 lines is many)
READ_STUCK_SECONDS = 30.0  # a read unfinished for this long makes the source not ready
DIRECTORY_CHECK_SECONDS = 2.0  # how often the watched directory is checked to still be there


@dataclass(frozen=True)
class FileDropSettings:
    """The ``[sources.filedrop]`` table, read."""

    directory: Path
    keep_processed: float = 7 * 86400.0
    max_file_size: int = files.MAX_FILE_BYTES


@dataclass
class _Observation:
    size: int
    mtime_ns: int


class FileDropSource:
    """Watches ``[sources.filedrop] directory`` and submits the events of each complete file."""

    def __init__(self, settings: Mapping[str, Any], context: PluginContext | None = None) -> None:
        self.settings = read_mapping(self.read_settings, settings, "[sources.filedrop]")
        self.directory = self.settings.directory
        self.context = context
        self._submit: Submit | None = None
        self._observer: BaseObserver | None = None
        self._queue: asyncio.Queue[Path | None] = asyncio.Queue()
        self._queued: set[Path] = set()
        self._watching: dict[Path, _Observation | None] = {}
        self._retry: dict[Path, tuple[float, int]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._worker: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._in_hand: ReadInHand | None = None
        self._watched_id: tuple[int, int] | None = None  # (device, inode) the watch is on
        self._directory_gone: str | None = None
        self.read_file = files.read_drop  # how a file is read (a test may make it hang)

    @classmethod
    def read_settings(cls, reader: SettingsReader) -> FileDropSettings:
        """Read ``[sources.filedrop]`` (see the module docstring)."""
        reader.check_keys(("directory", "keep_processed", "max_file_size"))
        if "directory" not in reader.data:
            reader.error('missing required key "directory": the directory to watch for event files')
        directory = reader.path_value("directory")
        keep = reader.duration("keep_processed", FileDropSettings.keep_processed)
        max_file_size = reader.size("max_file_size", files.MAX_FILE_BYTES)
        if max_file_size <= 0:
            reader.error('must be more than 0 bytes (a size such as "64MiB")', "max_file_size")
            max_file_size = files.MAX_FILE_BYTES
        return FileDropSettings(directory or Path(), keep, max_file_size)

    @property
    def ready(self) -> bool:
        """True while the directory is watched and files are being processed (no read hangs)."""
        return (
            self._observer is not None
            and self._observer.is_alive()
            and self._worker is not None
            and not self._worker.done()
            and self.problem is None
        )

    @property
    def problem(self) -> str | None:
        """Why the source is stuck, for /readyz: its directory gone, or a read that has not
        finished for long."""
        if self._directory_gone is not None:
            return self._directory_gone
        in_hand = self._in_hand
        if in_hand is None or in_hand.stuck_for() < READ_STUCK_SECONDS:
            return None
        return (
            f"reading {in_hand.path} has not finished after {in_hand.stuck_for():.0f}s (a hung "
            "file system?); later files wait: check the disk, or move that file away"
        )

    async def start(self, submit: Submit) -> None:
        """Create the folders, start watching, and queue the files already there."""
        self._submit = submit
        self._stopping.clear()
        self._queue, self._queued, self._watching = asyncio.Queue(), set(), {}
        try:
            self._observer = await asyncio.to_thread(
                self._start_observer, asyncio.get_running_loop()
            )
        except OSError as exc:
            raise RuntimeError(
                f"[sources.filedrop] directory {self.directory}: cannot watch it: {exc}; create "
                "it and give the postbackd user read and write access"
            ) from exc
        self._worker = asyncio.create_task(self._work(), name="filedrop-worker")
        self._tasks = [asyncio.create_task(self._tick(), name="filedrop-tick")]
        await self._rescan()
        log.info(
            "filedrop source watching",
            directory=str(self.directory),
            keep_processed=format_duration(self.settings.keep_processed),
        )

    async def stop(self) -> None:
        """Stop watching; the file in hand is finished (bounded), the rest waits for next start."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._worker is not None:
            self._queue.put_nowait(None)
            # A file being read is dropped at once (it is read again next start): a read that
            # hangs must not hold up shutdown. Events being stored get STOP_GRACE to commit.
            grace = 0.0 if self._in_hand is not None else STOP_GRACE
            _done, pending = await asyncio.wait({self._worker}, timeout=grace)
            for task in pending:
                task.cancel()
                log.warning("filedrop stop: a file was still in hand; it is read again next start")
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        observer, self._observer = self._observer, None
        if observer is not None:
            await asyncio.to_thread(stop_watching, observer)
        log.info("filedrop source stopped", directory=str(self.directory))

    # ------------------------------------------------------------ noticing files

    def _start_observer(self, loop: asyncio.AbstractEventLoop) -> BaseObserver:
        for folder in (
            self.directory,
            self.directory / files.PROCESSED,
            self.directory / files.REJECTED,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        found = self.directory.stat()
        self._watched_id = (found.st_dev, found.st_ino)
        return start_watching(self.directory, loop, self._on_fs_event)

    async def _check_directory(self) -> None:
        """Notice the directory removed (the watch, on its old inode, would see nothing more
        while /readyz said ready) and, once it is there again, watch the new one."""
        try:
            found = await asyncio.to_thread(os.stat, self.directory)
            present = (found.st_dev, found.st_ino) if S_ISDIR(found.st_mode) else None
        except OSError:
            present = None
        if present is None:
            if self._directory_gone is None:
                self._directory_gone = (
                    f"[sources.filedrop] directory {self.directory} is gone: files dropped now "
                    "are not seen; create it again (it is watched again by itself)"
                )
                log.error("filedrop: the directory is gone", directory=str(self.directory))
            return
        if present != self._watched_id:
            await self._watch_again()

    async def _watch_again(self) -> None:
        old, self._observer = self._observer, None
        if old is not None:
            await asyncio.to_thread(stop_watching, old)
        try:
            self._observer = await asyncio.to_thread(
                self._start_observer, asyncio.get_running_loop()
            )
        except OSError as exc:
            self._directory_gone = f"[sources.filedrop] directory {self.directory}: {exc}"
            return
        self._directory_gone = None
        log.info("filedrop: watching the directory again", directory=str(self.directory))
        await self._rescan()

    def _on_fs_event(self, complete: bool | None, path: Path) -> None:
        """`complete`: True = closed or renamed in; False = maybe still written; None = gone."""
        if path.parent != self.directory or self._stopping.is_set():
            return
        if complete is None:
            self._watching.pop(path, None)
        elif files.drop_kind(path.name) is None or path in self._retry:
            return
        elif complete:
            self._enqueue(path)
        else:
            self._watching.setdefault(path, None)

    def _enqueue(self, path: Path) -> None:
        self._watching.pop(path, None)
        if path not in self._queued:
            self._queued.add(path)
            self._queue.put_nowait(path)

    async def _tick(self) -> None:
        """Settle-checks, due retries, and now and then a rescan and a sweep of processed/."""
        last_rescan = last_sweep = last_check = time.monotonic()
        await self._sweep()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            if now - last_check >= DIRECTORY_CHECK_SECONDS:
                last_check = now
                await self._check_directory()
            for path, (due, attempts) in list(self._retry.items()):
                if due <= now:
                    self._retry[path] = (math.inf, attempts)  # queued: not due again
                    self._enqueue(path)
            if self._watching:
                await self._check_settled()
            if now - last_rescan >= RESCAN_SECONDS:
                last_rescan = now
                await self._rescan()
            if now - last_sweep >= SWEEP_SECONDS:
                last_sweep = now
                await self._sweep()

    async def _rescan(self) -> None:
        try:
            found = await asyncio.to_thread(files.list_drops, self.directory)
        except OSError as exc:
            log.error(
                "filedrop: cannot list the directory", directory=str(self.directory), error=str(exc)
            )
            return
        for path in found:
            if path not in self._queued and path not in self._retry:
                self._watching.setdefault(path, None)
        await self._check_settled()

    async def _check_settled(self) -> None:
        """Queue watched files whose size and mtime stood still for SETTLE_SECONDS."""
        paths = list(self._watching)
        stats = await asyncio.to_thread(stat_all, paths)
        wall = time.time()
        for path, stat in zip(paths, stats, strict=True):
            if path not in self._watching:
                continue
            if stat is None:
                del self._watching[path]
                continue
            seen = _Observation(stat.st_size, stat.st_mtime_ns)
            before = self._watching[path]
            if (before is None or before == seen) and wall - stat.st_mtime >= SETTLE_SECONDS:
                self._enqueue(path)
            else:
                self._watching[path] = seen

    async def _sweep(self) -> None:
        try:
            removed = await asyncio.to_thread(
                files.sweep_processed, self.directory, self.settings.keep_processed
            )
        except OSError as exc:
            log.error("filedrop: cannot prune processed/", error=str(exc))
            return
        if removed:
            log.info(
                "filedrop: pruned processed files",
                removed=removed,
                older_than=format_duration(self.settings.keep_processed),
            )

    # ------------------------------------------------------------ processing files

    async def _work(self) -> None:
        while not self._stopping.is_set():
            path = await self._queue.get()
            if path is None or self._stopping.is_set():
                return
            self._queued.discard(path)
            try:
                await self._process(path)
            except Exception as exc:
                log.exception(
                    "filedrop: file not handled; it stays and is tried again", file=str(path)
                )
                self._schedule_retry(path, f"{type(exc).__name__}: {exc}")

    async def _process(self, path: Path) -> None:
        assert self._submit is not None
        self._in_hand = ReadInHand(path, time.monotonic())
        try:
            max_file_size = self.settings.max_file_size
            dropped = await read_off_loop(
                lambda: self.read_file(path, max_file_size), name=f"filedrop-read {path.name}"
            )
        except OSError as exc:
            self._schedule_retry(path, f"cannot read: {exc}")
            return
        finally:
            self._in_hand = None
        if dropped is None:
            self._retry.pop(path, None)
            return
        if dropped.rejected_whole:
            await self._reject_whole(dropped, dropped.errors)
            return
        late: list[BadLine] = []
        duplicates = 0
        for start in range(0, len(dropped.events), SUBMIT_BATCH):
            chunk = dropped.events[start : start + SUBMIT_BATCH]
            try:
                results = await submit_many(self._submit, [item.event for item in chunk])
            except SpoolUnavailable as exc:
                self._schedule_retry(path, str(exc))
                return
            except Exception as exc:  # one event's fault, not the chunk's
                # Nothing of the chunk was stored: find the culprit(s) one by one, so a bad
                # event costs only its own line, never a chunk retried forever.
                if not isinstance(exc, EventRejected):
                    log.warning(
                        "filedrop: chunk refused; submitting its events one by one",
                        file=path.name,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                results = None
            if results is not None:
                duplicates += sum(result.duplicate for result in results)
                continue
            for index, item in enumerate(chunk, start):
                try:
                    result = await self._submit(item.event)
                except SpoolUnavailable as exc:
                    self._schedule_retry(path, str(exc))
                    return
                except Exception as exc:  # an event nothing can store: a bad line
                    if not isinstance(exc, EventRejected):
                        exc = EventRejected(f"cannot be stored: {type(exc).__name__}: {exc}")
                    if dropped.kind is DropKind.JSON:
                        where = f"[{index}]" if len(dropped.events) > 1 else "event"
                        note = f"the {index} event(s) before it were accepted" if index else ""
                        await self._reject_whole(
                            dropped, (f"{where} (id {item.event.id}): {exc}",), note=note
                        )
                        return
                    late.append(BadLine(item.line or 0, item.raw, str(exc)))
                    continue
                duplicates += result.duplicate
        self._retry.pop(path, None)
        bad = sorted([*dropped.bad_lines, *late], key=lambda b: b.line)
        accepted = len(dropped.events) - len(late)
        rejected_to = None
        if bad:
            rejected_to = await asyncio.to_thread(
                files.reject_lines, self.directory, path, bad, accepted
            )
        moved_to = await asyncio.to_thread(
            files.finish, self.directory, path, self.settings.keep_processed
        )
        log.info(
            "filedrop: file accepted",
            file=path.name,
            events=accepted,
            duplicates=duplicates,
            rejected_lines=len(bad),
            rejected_to=str(rejected_to) if rejected_to else None,
            moved_to=str(moved_to) if moved_to else "deleted",
        )
        if bad:
            count_rejected(self._submit, count=len(bad))
            log.warning(
                "filedrop: lines rejected",
                file=path.name,
                errors=[f"line {b.line}: {b.error}" for b in bad[:10]],
            )

    async def _reject_whole(
        self, dropped: DroppedFile, errors: tuple[str, ...], note: str = ""
    ) -> None:
        self._retry.pop(dropped.path, None)
        count_rejected(self._submit, count=max(1, len(errors)))
        target = await asyncio.to_thread(
            files.reject_whole, self.directory, dropped.path, errors, note
        )
        log.warning(
            "filedrop: file rejected",
            file=dropped.path.name,
            moved_to=str(target),
            errors=list(errors[:10]),
        )

    def _schedule_retry(self, path: Path, reason: str) -> None:
        _due, attempts = self._retry.get(path, (0.0, 0))
        delay = min(RETRY_FIRST * 2**attempts, RETRY_MAX)
        self._retry[path] = (time.monotonic() + delay, attempts + 1)
        log.warning(
            "filedrop: cannot store now; file kept, retrying",
            file=path.name,
            reason=reason,
            retry_in=delay,
            attempt=attempts + 1,
        )
