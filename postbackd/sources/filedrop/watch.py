"""The watchdog side of the file-drop source: inotify events handed to the event loop.

watchdog calls its handler on its own thread; this module only turns each event into
``notify(complete, path)`` via ``loop.call_soon_threadsafe``, so every decision is taken on the
loop. ``complete`` is True when a file was closed after writing (``IN_CLOSE_WRITE``: a plain
``cp`` is done) or renamed into the directory, False when it changed (maybe still being
written), and None when it went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

Notify = Callable[[bool | None, Path], None]


def start_watching(
    directory: Path, loop: asyncio.AbstractEventLoop, notify: Notify
) -> BaseObserver:
    """Watch `directory` (not its subfolders); blocks briefly, call it through to_thread."""

    def on_loop(complete: bool | None, path: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: a rescan catches up
            loop.call_soon_threadsafe(notify, complete, Path(path))

    observer = Observer()
    observer.schedule(_Handler(on_loop), str(directory), recursive=False)
    observer.start()
    return observer


def stop_watching(observer: BaseObserver) -> None:
    """Stop the watcher thread (blocks up to a few seconds; call it through to_thread)."""
    observer.stop()
    observer.join(timeout=5)


def stat_all(paths: list[Path]) -> list[os.stat_result | None]:
    """`stat` of each path, None for those gone; one thread hop for many files."""
    stats: list[os.stat_result | None] = []
    for path in paths:
        try:
            stats.append(path.lstat())  # the entry itself: never follow a symlink
        except FileNotFoundError:
            stats.append(None)
    return stats


class _Handler(FileSystemEventHandler):
    def __init__(self, notify: Callable[[bool | None, str], None]) -> None:
        self._notify = notify

    def on_closed(self, event: FileClosedEvent) -> None:
        self._notify(True, os.fsdecode(event.src_path))

    def on_moved(self, event: DirMovedEvent | FileMovedEvent) -> None:
        if not event.is_directory:
            self._notify(None, os.fsdecode(event.src_path))
            self._notify(True, os.fsdecode(event.dest_path))

    def on_created(self, event: Any) -> None:
        if isinstance(event, FileCreatedEvent):
            self._notify(False, os.fsdecode(event.src_path))

    def on_modified(self, event: Any) -> None:
        if isinstance(event, FileModifiedEvent):
            self._notify(False, os.fsdecode(event.src_path))

    def on_deleted(self, event: Any) -> None:
        if isinstance(event, FileDeletedEvent):
            self._notify(None, os.fsdecode(event.src_path))
