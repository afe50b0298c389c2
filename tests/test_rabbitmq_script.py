"""scripts/rabbitmq.sh (and so scripts/test) claims only a node it started itself."""

from __future__ import annotations

import subprocess

from tests.sources.amqp.rabbitmq_fixtures import SCRIPT, Broker, rabbitmq

__all__ = ["rabbitmq"]


def test_a_running_node_is_reused_not_claimed(rabbitmq: Broker) -> None:
    """The session's broker is up (started or found by the fixture): a second `start` reuses
    it, says so, and does not claim it — so its caller's exit trap would leave it running."""
    again = subprocess.run(
        [str(SCRIPT), "start"], capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == "running\n"
    assert "already running" in again.stderr and "left running" in again.stderr
    status = subprocess.run(
        [str(SCRIPT), "status"], capture_output=True, text=True, timeout=60, check=False
    )
    assert status.returncode == 0, status.stderr


def test_scripts_test_stops_only_a_node_it_started() -> None:
    """scripts/test arms its stopping trap only when `start` answered `started`."""
    script = (SCRIPT.parent / "test").read_text()
    guarded = script.index('if [ "$rabbitmq" = started ]; then')
    assert 'rabbitmq="$(scripts/rabbitmq.sh start)"' in script
    assert script.index("trap 'scripts/rabbitmq.sh stop") > guarded
    assert script.count("rabbitmq.sh stop") == 1
