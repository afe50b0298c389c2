"""sd_notify against a real unix datagram socket, as systemd provides it in $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postbackd.sdnotify import Notifier


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    directory = tempfile.mkdtemp(prefix="pbn-")  # short: unix socket paths are limited
    path = str(Path(directory) / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    try:
        yield path, sock
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_each_message_arrives_as_systemd_reads_it(notify_socket):
    path, sock = notify_socket
    notifier = Notifier(path)
    assert notifier.enabled
    notifier.ready("generation 1: 2 customers, 3 triggers")
    assert received(sock) == ["READY=1", "STATUS=generation 1: 2 customers, 3 triggers"]
    notifier.ready()
    assert received(sock) == ["READY=1"]
    notifier.stopping()
    assert received(sock) == ["STOPPING=1"]
    notifier.watchdog()
    assert received(sock) == ["WATCHDOG=1"]
    notifier.status("3 queued")
    assert received(sock) == ["STATUS=3 queued"]


def test_reloading_carries_the_monotonic_clock(notify_socket):
    path, sock = notify_socket
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier(path).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, monotonic = received(sock)
    assert reloading == "RELOADING=1"
    name, _, value = monotonic.partition("=")
    assert name == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_socket_address():
    name = f"postbackd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        Notifier("@" + name).ready()
        assert received(sock) == ["READY=1"]


def test_without_systemd_nothing_is_sent_and_nothing_fails(monkeypatch, tmp_path):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("x")  # no socket: a no-op
    gone = Notifier(str(tmp_path / "no-such-socket"))
    gone.ready("x")  # systemd went away: never fatal
    gone.watchdog()


def test_notify_socket_is_read_from_the_environment(monkeypatch, notify_socket):
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    Notifier().stopping()
    assert received(sock) == ["STOPPING=1"]


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("1000000", None, 0.5),
        ("30000000", "self", 15.0),
        ("30000000", "1", None),  # meant for another process
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch, usec, pid, expected):
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert Notifier.watchdog_interval() == expected
