"""A real PostgreSQL for tests: the private cluster of ``scripts/postgres.sh``, a fresh database
per test.

The cluster's URL comes from ``POSTBACKD_TEST_PG`` or the file the script writes; when neither
answers, the session starts the cluster itself (and stops it after). Where PostgreSQL cannot be
had the tests are skipped with the reason — except under ``CI=true``, where that is a failure:
CI must not go green without having run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.parallel import in_worker, one_at_a_time

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "postgres.sh"
URL_FILE = Path(os.environ.get("POSTGRES_TEST_DIR", "/tmp/postbackd-postgres")) / "url"
START_TIMEOUT = 300  # an apt-get install on a fresh machine included


@dataclass(frozen=True)
class PgCluster:
    """The test cluster: the URL of its maintenance database, and stop/start for outage tests."""

    url: str

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def stop(self) -> None:
        _script("stop", timeout=60, check=True)

    def start(self) -> None:
        _script("start", timeout=START_TIMEOUT, check=True)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI and could not be started: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


def _script(command: str, timeout: float, check: bool = False) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(SCRIPT), command], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"scripts/postgres.sh {command} failed: {done.stderr.strip()}")
    return done


async def _answers(url: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def _known_url() -> str | None:
    if os.environ.get("POSTBACKD_TEST_PG"):
        return os.environ["POSTBACKD_TEST_PG"]
    if URL_FILE.is_file():
        return URL_FILE.read_text().strip()
    return None


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The running cluster; started (and stopped after the session) when it was not."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        _unavailable("asyncpg is not installed (pip install 'postbackd[postgres]')")
    # parallel workers: one starts it, the others find it running
    with one_at_a_time(f"postgres-{URL_FILE.parent.name}"):
        url = _known_url()
        running = url is not None and asyncio.run(_answers(url))
        if not running:
            started = _script("start", timeout=START_TIMEOUT)
    if running:
        assert url is not None
        yield PgCluster(url)
        return
    url = _known_url()
    if started.returncode != 0 or url is None:
        _unavailable(started.stderr.strip() or "scripts/postgres.sh start wrote no URL")
    assert url is not None
    try:
        yield PgCluster(url)
    finally:
        if not in_worker():  # other workers may still use it: it stays (scripts/test stops it)
            _script("stop", timeout=60)


@contextlib.contextmanager
def fresh_database(cluster: PgCluster) -> Iterator[str]:
    """A new, empty database on the cluster (its URL), dropped on exit."""
    name = f"postbackd_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(cluster, f'CREATE DATABASE "{name}"'))
    try:
        yield cluster.database_url(name)
    finally:
        asyncio.run(_admin(cluster, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(cluster: PgCluster, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(cluster.url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    with fresh_database(pg_cluster) as url:
        yield url
