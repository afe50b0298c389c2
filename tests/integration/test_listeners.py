"""Listeners and readiness: READY=1 (and "postbackd ready") only once every listener is bound;
an address that cannot be bound fails the start (exit 1, the address and the reason in the
log) and never says READY; a reload onto a taken address is rejected and the running
configuration keeps serving.

Each test holds a port with a real listening socket, runs the real daemon as a subprocess and
reads its sd_notify datagrams on a real unix socket (`notify`, as systemd would).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from postbackd.testing import PostbackdDaemon, daemon_files, event_payload, free_port
from tests.integration.conftest import NotifyListener


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port held by a listening socket of this test (SO_REUSEADDR as aiohttp)."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def log_entries(daemon: PostbackdDaemon) -> list[dict[str, Any]]:
    entries = []
    for line in daemon.logs().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def events_logged(daemon: PostbackdDaemon) -> list[str]:
    return [str(entry.get("event")) for entry in log_entries(daemon)]


async def test_ready_is_announced_only_once_the_http_listener_answers(
    postbackd_daemon: Callable[..., PostbackdDaemon], notify: NotifyListener
) -> None:
    daemon = postbackd_daemon(env={"NOTIFY_SOCKET": notify.path})
    daemon.launch()
    await notify.wait_for("READY=1", timeout=20)
    # The moment READY=1 is read, the listener must already accept connections.
    _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", daemon.port), 2)
    writer.close()
    await writer.wait_closed()
    logged = events_logged(daemon)
    assert logged.index("http source listening") < logged.index("postbackd ready"), logged


async def test_a_taken_intake_port_fails_the_start_with_the_address_and_reason(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    notify: NotifyListener,
    taken_port: int,
) -> None:
    daemon = postbackd_daemon(env={"NOTIFY_SOCKET": notify.path})
    daemon.port = taken_port
    daemon.write("postbackd.toml", daemon_files(port=taken_port, spool=daemon.conf_dir / "s.db"))
    daemon.launch()
    assert await daemon.wait_exit(20) == 1
    (failure,) = [e for e in log_entries(daemon) if e.get("event") == "cannot start"]
    assert failure["listen"] == f"127.0.0.1:{taken_port}"
    assert failure["listener"] == "[sources.http] listen"
    assert "Address already in use" in failure["error"], failure
    assert "postbackd ready" not in events_logged(daemon)
    assert "READY=1" not in notify.lines(), notify.lines()


async def test_a_taken_admin_listen_fails_the_start(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    notify: NotifyListener,
    taken_port: int,
) -> None:
    daemon = postbackd_daemon(env={"NOTIFY_SOCKET": notify.path})
    daemon.write(
        "postbackd.toml",
        daemon_files(port=taken_port, spool=daemon.conf_dir / "s.db", sources={"http": None}),
    )
    daemon.launch()
    assert await daemon.wait_exit(20) == 1
    (failure,) = [e for e in log_entries(daemon) if e.get("event") == "cannot start"]
    assert failure["listener"] == "[daemon] admin_listen"
    assert f"cannot listen on 127.0.0.1:{taken_port}: Address already in use" in failure["error"]
    assert "READY=1" not in notify.lines(), notify.lines()


async def test_a_reload_onto_a_taken_port_is_rejected_and_the_old_listener_stays(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    notify: NotifyListener,
    taken_port: int,
) -> None:
    daemon = postbackd_daemon(env={"NOTIFY_SOCKET": notify.path})
    await daemon.start()
    spool = daemon.conf_dir.parent / "spool.db"
    daemon.write("postbackd.toml", daemon_files(port=taken_port, spool=spool))
    status, answer = await daemon.request("POST", "/v1/reload")
    assert status == 422, answer
    assert f"cannot listen on 127.0.0.1:{taken_port}: Address already in use" in answer["error"]
    status, config = await daemon.request("GET", "/v1/config")
    assert config["generation"] == 1
    assert f"127.0.0.1:{taken_port}" in config["last_error"]
    status, ready = await daemon.request("GET", "/readyz")
    assert status == 200 and ready["ready"], ready
    await daemon.submit(event_payload("evt-after-rejected-reload"))

    # The same change onto a free port applies (the directory watcher reloads it), and
    # READY=1 follows the bind of the new listener.
    mark = len(notify.messages)
    daemon.port = free_port()
    daemon.write("postbackd.toml", daemon_files(port=daemon.port, spool=spool))
    reloading = await notify.wait_for("RELOADING=1", after=mark, timeout=15)
    await notify.wait_for("READY=1", after=reloading, timeout=15)
    status, ready = await daemon.request("GET", "/readyz")  # answered at once, on the new port
    assert status == 200 and ready["ready"], ready
