"""Shared fixtures: a real webhook receiver and the daemon as a subprocess."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess, free_port, webhook_config
from tests.support.notify import notify  # noqa: F401  (a fixture: systemd's notify socket)
from tests.support.receiver import Receiver


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run slow soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow soak test: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Build daemons on generated configurations; every one is stopped after the test."""
    started: list[DaemonProcess] = []

    def make(
        receiver_url: str,
        *,
        token: str | None = None,
        extra_trigger: str = "",
        daemon_extra: str = "",
        files: dict[str, str] | None = None,
    ) -> DaemonProcess:
        port = free_port()
        conf_dir = tmp_path / f"conf-{len(started)}"
        daemon = DaemonProcess(conf_dir, port, token=token)
        daemon.write(
            files
            or webhook_config(
                receiver_url,
                port=port,
                spool=tmp_path / "spool.db",
                extra_trigger=extra_trigger,
                daemon_extra=daemon_extra,
                token=token,
            )
        )
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.stop()
