"""Watches the configuration directory and asks for a reload when it changes.

Created, changed, moved and deleted files all count; editors' temporary files (names starting
with ``.`` or ending in ``~``, ``.tmp``, ``.swp``) do not. A burst of changes — an editor
saving, ``cp -r``, a config-management run — is coalesced into one reload after a short quiet
period.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from postbackd.logs import get_logger

log = get_logger("postbackd.confwatch")

DEBOUNCE = 0.3
IGNORED_SUFFIXES = ("~", ".tmp", ".swp", ".swx", ".part")


def relevant(path: str) -> bool:
    """Whether a change to `path` may change the configuration."""
    name = Path(path).name
    return bool(name) and not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES)


class _Handler(FileSystemEventHandler):
    def __init__(self, loop: asyncio.AbstractEventLoop, notify: Callable[[str], None]) -> None:
        self.loop = loop
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        for path in paths:
            text = path.decode() if isinstance(path, bytes) else path
            if text and relevant(text):
                self.loop.call_soon_threadsafe(self.notify, text)
                return


class ConfigWatcher:
    """Runs `reload(reason)` on the event loop after the directory settled for `DEBOUNCE`."""

    def __init__(self, directory: Path, reload: Callable[[str], Awaitable[object]]) -> None:
        self.directory = directory
        self.reload = reload
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._timer: asyncio.TimerHandle | None = None
        self._changed: set[str] = set()
        self._task: asyncio.Task[object] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        observer = Observer()
        observer.schedule(_Handler(loop, self._changed_path), str(self.directory), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def _changed_path(self, path: str) -> None:
        self._changed.add(path)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(DEBOUNCE, self._fire)

    def _fire(self) -> None:
        self._timer = None
        changed, self._changed = sorted(self._changed), set()
        shown = ", ".join(
            str(Path(p).relative_to(self.directory)) if p.startswith(str(self.directory)) else p
            for p in changed[:5]
        )
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        self._task = asyncio.ensure_future(self.reload(f"files changed: {shown}{more}"))
