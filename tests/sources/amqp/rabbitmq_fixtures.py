"""A real RabbitMQ broker for tests: started through ``scripts/rabbitmq.sh`` once per session.

Import the fixtures into a test module (``from tests.sources.amqp.rabbitmq_fixtures import ...``).
Where the broker cannot be had the tests are skipped with the reason — except under
``CI=true``, where that is a failure: CI must not go green without having run them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aio_pika
import pytest

from tests.parallel import in_worker, one_at_a_time
from tests.paths import REPO

SCRIPT = REPO / "scripts" / "rabbitmq.sh"
START_TIMEOUT = 300  # an apt-get install on a fresh machine included


@dataclass(frozen=True)
class Broker:
    """The test broker: its URL, and rabbitmqctl against it (``broker.ctl("stop_app")``)."""

    url: str

    def ctl(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [str(SCRIPT), "ctl", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"RabbitMQ is required under CI and could not be started: {reason}")
    pytest.skip(f"RabbitMQ not available: {reason}")


def _script(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), command], capture_output=True, text=True, timeout=timeout, check=False
    )


async def _answers(url: str) -> bool:
    """Whether a broker takes an AMQP connection at `url` — quicker than the script's
    `rabbitmqctl ping`, an Erlang VM started per call, which every parallel worker would pay."""
    try:
        connection = await aio_pika.connect(url, timeout=5)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
        return False
    await connection.close()
    return True


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[Broker]:
    """Ensures the broker runs for the session; stops it afterwards only if this session
    started it (``start`` says ``started``): a node already running is left running."""
    port = os.environ.get("RABBITMQ_NODE_PORT", "5672")
    url = f"amqp://guest:guest@127.0.0.1:{port}/"
    if asyncio.run(_answers(url)):  # running (scripts/test started it): not ours to stop
        yield Broker(url=url)
        return
    try:
        # parallel workers: one starts it, the others find it running
        with one_at_a_time(f"rabbitmq-{port}"):
            started = _script("start", timeout=START_TIMEOUT)
        if started.returncode != 0:
            _unavailable(f"{SCRIPT} start exited {started.returncode}: {started.stderr.strip()}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"{SCRIPT} did not finish: {exc}")
    yield Broker(url=url)
    # in a parallel worker others may still use it: it stays (scripts/test stops it)
    if started.stdout.strip() == "started" and not in_worker():
        _script("stop", timeout=120)


@pytest.fixture
def queue_name() -> str:
    """A fresh queue name per test (the test declares it as it needs)."""
    return f"postbackd-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def amqp_channel(
    rabbitmq: Broker, queue_name: str
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A channel for the test's own publishing and inspection; deletes the test's queues after."""
    connection = await aio_pika.connect_robust(rabbitmq.url, timeout=10)
    try:
        yield await connection.channel()
    finally:
        await connection.close()
        await _delete_test_objects(rabbitmq.url, queue_name)


async def _delete_test_objects(url: str, queue_name: str) -> None:
    """Deletes the test's queue, its dead-letter queue and exchange, on a fresh connection."""
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for name in (queue_name, f"{queue_name}.dead"):
            await channel.queue_delete(name, if_unused=False, if_empty=False)
        await channel.exchange_delete(f"{queue_name}.dlx")
