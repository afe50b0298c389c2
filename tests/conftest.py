"""Shared fixtures on `postbackd.testing`: the receiver, and daemons on a generated conf.d."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from postbackd.spool import Spool, open_spool
from postbackd.testing import PostbackdDaemon, WebhookReceiver, free_port
from tests.configs import webhook_config
from tests.pg_fixtures import fresh_database, pg_cluster
from tests.sftp_server import sftp_server

# the session fixture behind `spool_target`; a real SFTP server (tests/sftp_server.py)
__all__ = ["pg_cluster", "sftp_server"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run slow soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--run-slow"):
        skip_slow = pytest.mark.skip(reason="slow soak test: run with --run-slow")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip_slow)
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: other tests run beside this one
        _in_parallel(items)


# Started first on their worker so that no long test is left to run alone at the end: the
# benchmark's smoke test (~40 s), then the daemons and the browser. Order within each is kept.
LONG_FIRST = ("tests/test_bench_quick.py", "tests/integration/", "tests/faults/", "tests/ui/")


def _in_parallel(items: list[pytest.Item]) -> None:
    """Skip the `serial` tests (they stop a server the tests beside them use) and put the long
    tests first. The order only changes here, so every worker collects the same one."""
    skip_serial = pytest.mark.skip(
        reason="stops a server other tests share: run alone with `pytest -m serial` "
        "(scripts/test does, after its parallel phase)"
    )
    for item in items:
        if "serial" in item.keywords:
            item.add_marker(skip_serial)

    def rank(item: pytest.Item) -> int:
        path = item.nodeid
        return next(
            (i for i, prefix in enumerate(LONG_FIRST) if path.startswith(prefix)), len(LONG_FIRST)
        )

    items.sort(key=rank)


@pytest.fixture
def receiver(webhook_receiver: WebhookReceiver) -> WebhookReceiver:
    """`postbackd.testing`'s receiver, under the name the project's tests use."""
    return webhook_receiver


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., PostbackdDaemon]]:
    """Build daemons on generated configurations; every one is stopped after the test."""
    started: list[PostbackdDaemon] = []

    def make(
        receiver_url: str,
        *,
        token: str | None = None,
        extra_trigger: str = "",
        daemon_extra: str = "",
        files: dict[str, str] | None = None,
    ) -> PostbackdDaemon:
        port = free_port()
        conf_dir = tmp_path / f"conf-{len(started)}"
        daemon = PostbackdDaemon(conf_dir, port, token=token)
        daemon.write_files(
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


@pytest.fixture(params=["sqlite", "postgres"])
def spool_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """Where the contract suite's spool lives: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield tmp_path / "spool.db"
        return
    if request.node.get_closest_marker("sqlite_only"):
        pytest.skip("tests the SQLite spool's own machinery")
    with fresh_database(request.getfixturevalue("pg_cluster")) as url:
        yield url


@pytest.fixture
async def spool(spool_target: Path | str) -> AsyncIterator[Spool]:
    opened = await open_spool(spool_target)
    try:
        yield opened
    finally:
        await opened.close()
