"""Watches the configuration directory and asks for a reload when it changes.

Created, changed, moved and deleted files all count; editors' temporary files (a name, or a
directory on the way, starting with ``.`` or ending in ``~``, ``.tmp``, ``.swp``; ``sed -i``'s
``sedXXXXXX``) do not, and
neither does the "directory modified" notice the kernel adds to each of those — otherwise
opening a file in vim would reload. A burst of changes (an editor saving, ``cp -r``, a
config-management run) is coalesced into one reload once the directory has been quiet for
`DEBOUNCE`, but never later than `MAX_DELAY` after the first change of the burst, so a file
rewritten continuously cannot hold reloads off for ever.

A file still open for writing is not read: a change counts once its writer closes it (inotify's
close-after-write), so a file truncated and rewritten in place is never loaded half-written —
which could otherwise drop a trigger for a moment and cancel its waiting deliveries.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from postbackd.config.files import is_ignored
from postbackd.logs import get_logger

log = get_logger("postbackd.config.watch")

DEBOUNCE = 0.3
MAX_DELAY = 2.0
EXTRA_IGNORED_SUFFIXES = (".swx", ".part")
IGNORED_EVENTS = ("opened", "closed_no_write")
WRITING_EVENTS = ("created", "modified")  # the writer may still be at it: wait for "closed"


SED_TEMPORARY = re.compile(r"sed[A-Za-z0-9]{6}")
"""The temporary file of ``sed -i`` (GNU and busybox: ``sedXXXXXX`` beside the file it edits,
renamed over it at the end): only the rename, named by the file edited, counts."""


def relevant(path: str, directory: Path) -> bool:
    """Whether a change to `path` (inside `directory`) may change the configuration."""
    try:
        parts = Path(path).relative_to(directory).parts
    except ValueError:
        return False
    return (
        bool(parts)
        and not any(is_ignored(part) or part.endswith(EXTRA_IGNORED_SUFFIXES) for part in parts)
        and not SED_TEMPORARY.fullmatch(parts[-1])
    )


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: filters, then hands relevant paths to the event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        directory: Path,
        notify: Callable[[str, bool], None],
    ) -> None:
        self.loop = loop
        self.directory = directory
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in IGNORED_EVENTS:
            return
        if event.is_directory and event.event_type == "modified":
            return  # the parent's notice of a change to a file inside: judged by that file
        for path in (event.dest_path, event.src_path):  # a move is named by where it went
            text = path.decode() if isinstance(path, bytes) else path
            if text and relevant(text, self.directory):
                writing = not event.is_directory and event.event_type in WRITING_EVENTS
                self.loop.call_soon_threadsafe(self.notify, text, writing)
                return


class ConfigWatcher:
    """Runs `reload(reason)` on the event loop once a burst of changes has settled."""

    def __init__(self, directory: Path, reload: Callable[[str], Awaitable[object]]) -> None:
        self.directory = directory
        self.reload = reload
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._timer: asyncio.TimerHandle | None = None
        self._burst_started: float | None = None
        self._changed: set[str] = set()
        self._writing: set[str] = set()  # files created or modified and not yet closed
        self._reloads: set[asyncio.Task[object]] = set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        observer = Observer()
        handler = _Handler(loop, self.directory, self._changed_path)
        observer.schedule(handler, str(self.directory), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer
        log.debug("watching the configuration directory", conf_dir=str(self.directory))

    async def stop(self) -> None:
        """Stop watching; a reload already running is left to finish (it holds the lock)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            await asyncio.to_thread(observer.join, 5)

    def _changed_path(self, path: str, writing: bool) -> None:
        if self._observer is None:
            return  # stopped meanwhile
        log.debug("configuration file changed", path=path, writing=writing)
        if writing:
            self._writing.add(path)
        else:
            self._writing.discard(path)
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._changed.add(path)
        if self._burst_started is None:
            self._burst_started = now
        if self._timer is not None:
            self._timer.cancel()
        fire_at = min(now + DEBOUNCE, self._burst_started + MAX_DELAY)
        self._timer = loop.call_at(fire_at, self._fire)

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        if (
            self._writing
            and self._burst_started is not None
            and loop.time() < self._burst_started + MAX_DELAY
        ):
            self._timer = loop.call_at(self._burst_started + MAX_DELAY, self._fire)
            return  # a writer has the file open: its close will bring the reload forward
        self._writing.clear()
        self._timer, self._burst_started = None, None
        changed, self._changed = sorted(self._changed), set()
        shown = ", ".join(_shown(p, self.directory) for p in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        task = asyncio.ensure_future(self.reload(f"files changed: {shown}{more}"))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)


def _shown(path: str, directory: Path) -> str:
    try:
        return str(Path(path).relative_to(directory))
    except ValueError:
        return path
