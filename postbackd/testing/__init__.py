"""pytest fixtures and helpers for testing postbackd plugins against real peers.

Installed with postbackd as a pytest plugin (entry point ``pytest11``), so its fixtures are
there in any test suite of an environment that has postbackd; with plugin autoloading off,
add ``-p postbackd.testing`` or ``pytest_plugins = ["postbackd.testing"]`` in the top conftest.

Fixtures (both synchronous, so they work in sync and async tests alike):

- ``webhook_receiver`` — a real aiohttp server on 127.0.0.1, in its own thread, that records
  every request; script statuses per path or install a handler (a fake MIS, a chat service).
- ``postbackd_daemon`` — a factory of real daemons: ``python -m postbackd run`` as a
  subprocess on a generated ``conf.d`` with your plugin files, triggers and settings.

Every daemon a test launched (through the fixture or a `PostbackdDaemon` of its own) is stopped
after the test, also when the test forgot to or failed first.

Helpers: `event_payload` and `make_event` (an event as posted, and as a validated `Event`),
`make_delivery` (what ``deliver`` receives), `RecordingSubmit` (a ``submit`` for a source
under test) and `plugin_host` (load plugins as the daemon does, without entry points).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from postbackd.testing.daemon import (
    FINAL_STATES,
    PostbackdDaemon,
    daemon_files,
    free_port,
    stop_launched,
)
from postbackd.testing.receiver import ReceivedRequest, WebhookReceiver
from postbackd.testing.values import (
    RecordingSubmit,
    event_payload,
    make_delivery,
    make_event,
    plugin_host,
)

__all__ = [
    "FINAL_STATES",
    "PostbackdDaemon",
    "ReceivedRequest",
    "RecordingSubmit",
    "WebhookReceiver",
    "daemon_files",
    "event_payload",
    "make_delivery",
    "make_event",
    "plugin_host",
    "postbackd_daemon",
    "webhook_receiver",
]


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    yield
    stop_launched()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A real HTTP server on 127.0.0.1 recording requests: ``webhook_receiver.url("/hook")``."""
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def postbackd_daemon(tmp_path: Path) -> Iterator[Callable[..., PostbackdDaemon]]:
    """A factory of daemons; call it with `daemon_files` arguments plus these:

    ``plugins`` — plugin files or packages to load through ``[daemon] plugin_dirs``: paths
    (copied) or a mapping of file name to source text; ``env`` — extra environment (e.g.
    ``POSTBACKD_DISABLE_PLUGINS``); ``entry_points=False`` — run with ``--no-plugins``.
    Then ``await daemon.start()``.
    """
    made: list[PostbackdDaemon] = []

    def make(
        *,
        plugins: Iterable[Path] | Mapping[str, str] = (),
        env: Mapping[str, str] | None = None,
        entry_points: bool = True,
        **config: Any,
    ) -> PostbackdDaemon:
        root = tmp_path / f"postbackd-{len(made)}"
        plugin_dir = root / "plugins"
        plugin_dir.mkdir(parents=True)
        if isinstance(plugins, Mapping):
            for name, text in plugins.items():
                (plugin_dir / name).write_text(text)
        else:
            for path in map(Path, plugins):
                copy = shutil.copytree if path.is_dir() else shutil.copy
                copy(path, plugin_dir / path.name)
        daemon = PostbackdDaemon(
            root / "conf.d",
            free_port(),
            env=dict(env or {}),
            args=() if entry_points else ("--no-plugins",),
        )
        daemon.write(
            "postbackd.toml",
            daemon_files(
                port=daemon.port, spool=root / "spool.db", plugin_dirs=[plugin_dir], **config
            ),
        )
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.stop()
