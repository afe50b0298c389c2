"""systemd integration: sd_notify from a real daemon process to a real notify socket, and the
unit, sysusers and tmpfiles files checked by systemd's own tools.

The daemon gets ``NOTIFY_SOCKET`` (a unix datagram socket this test reads, as systemd would)
and ``WATCHDOG_USEC``. `systemd-analyze`, `systemd-sysusers` and `systemd-tmpfiles` come with
Debian's `systemd` package (scripts/ci-packages.sh installs it); without them those tests are
skipped, except under CI, where a missing tool is a failure.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.daemon import event

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"


@dataclass
class NotifyListener:
    """Reads datagrams from the notify socket into `messages` (arrival time, lines)."""

    path: str
    sock: socket.socket
    messages: list[tuple[float, list[str]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            self.messages.append((time.monotonic(), data.decode().split("\n")))
            self.arrived.set()

    def lines(self) -> list[str]:
        return [line for _, lines in self.messages for line in lines]

    async def wait_for(self, line: str, *, after: int = 0, timeout: float = 10.0) -> int:
        """Index (in `messages`) of the first message at or after `after` holding `line`."""
        deadline = time.monotonic() + timeout
        while True:
            for index, (_, lines) in enumerate(self.messages[after:], start=after):
                if line in lines:
                    return index
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {line!r} within {timeout}s; got {self.messages}"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                pass


@pytest.fixture
async def notify() -> AsyncIterator[NotifyListener]:
    directory = tempfile.mkdtemp(prefix="pbn-")  # short: unix socket paths are limited
    path = str(Path(directory) / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    listener = NotifyListener(path, sock)
    task = asyncio.create_task(listener.run())
    try:
        yield listener
    finally:
        task.cancel()
        sock.close()
        shutil.rmtree(directory)


async def test_sd_notify_lifecycle(receiver, daemon_factory, notify):
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"}
    daemon.start()
    ready = await notify.wait_for("READY=1", timeout=20)
    await daemon.wait_ready()
    status = [line for line in notify.messages[ready][1] if line.startswith("STATUS=")]
    assert status == ["STATUS=generation 1: 1 customer, 1 trigger"]

    first_ping = await notify.wait_for("WATCHDOG=1", after=ready)
    await asyncio.sleep(2.2)
    pings = [at for at, lines in notify.messages[first_ping:] if "WATCHDOG=1" in lines]
    assert 3 <= len(pings) <= 7, pings  # every 0.5 s: half of WATCHDOG_USEC
    assert all(0.3 < b - a < 1.2 for a, b in itertools.pairwise(pings)), pings  # a busy CI box
    summaries = [line for line in notify.lines() if line.startswith("STATUS=generation 1;")]
    assert summaries, notify.lines()  # the periodic summary: queue depth, deliveries/min
    assert "queued" in summaries[0] and "delivered/min" in summaries[0]

    mark = len(notify.messages)
    daemon.signal(signal.SIGHUP)
    reloading = await notify.wait_for("RELOADING=1", after=mark)
    (usec,) = [x for x in notify.messages[reloading][1] if x.startswith("MONOTONIC_USEC=")]
    now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 < now_usec - int(usec.split("=")[1]) < 10_000_000
    again = await notify.wait_for("READY=1", after=reloading)
    assert "STATUS=generation 2: 1 customer, 1 trigger" in notify.messages[again][1]

    mark = len(notify.messages)
    broken = daemon.conf_dir / "broken.toml"
    broken.write_text("[[customer]]\nid = 7\n")  # rejected: READY=1 still follows
    reloading = await notify.wait_for("RELOADING=1", after=mark)
    again = await notify.wait_for("READY=1", after=reloading)
    assert "STATUS=generation 2: 1 customer, 1 trigger" in notify.messages[again][1]

    await daemon.post(event("sd-1"))
    await receiver.wait_for(1, timeout=5)
    mark = len(notify.messages)
    daemon.signal(signal.SIGTERM)
    await notify.wait_for("STOPPING=1", after=mark)
    assert await asyncio.to_thread(daemon.wait_exit, 20) == 0


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: scripts/ci-packages.sh installs Debian's systemd")
        pytest.skip(f"{name} is not installed (apt-get install systemd)")
    return path


def test_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = tool("systemd-analyze")
    postbackd = Path(sys.executable).with_name("postbackd")
    assert postbackd.exists(), "the package's console script is not installed in this venv"
    unit = (SYSTEMD / "postbackd.service").read_text()
    assert "/opt/postbackd/bin/postbackd" in unit
    (tmp_path / "postbackd.service").write_text(
        unit.replace("/opt/postbackd/bin/postbackd", str(postbackd))
    )
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "postbackd.service")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # verify exits 0 on an unknown key or a bad value, with a warning naming the unit file
    unit_warnings = [line for line in result.stderr.splitlines() if "postbackd.service" in line]
    assert unit_warnings == []


def test_unit_asks_for_what_the_daemon_provides():
    directives: dict[str, list[str]] = {}
    for line in (SYSTEMD / "postbackd.service").read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            directives.setdefault(key, []).append(value)
    single = {key: values[-1] for key, values in directives.items()}
    assert single["Type"] == "notify"
    assert " check " in single["ExecStartPre"]
    assert " run " in single["ExecStart"]
    assert " reload " in single["ExecReload"]
    assert single["Restart"] == "on-failure"
    assert single["User"] == single["Group"] == "postbackd"
    assert single["StateDirectory"] == single["ConfigurationDirectory"] == "postbackd"
    assert single["WatchdogSec"]
    assert single["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert "@system-service" in directives["SystemCallFilter"]
    assert single["ReadWritePaths"] == "/var/spool/postbackd"
    for hardening in (
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "NoNewPrivileges",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "RestrictRealtime",
    ):
        assert single[hardening] in ("true", "strict"), hardening


@pytest.mark.skipif(os.geteuid() != 0, reason="creating files owned by postbackd needs root")
def test_sysusers_and_tmpfiles_create_the_user_and_drop_directory(tmp_path):
    sysusers, tmpfiles = tool("systemd-sysusers"), tool("systemd-tmpfiles")
    root = tmp_path / "root"
    (root / "etc" / "sysusers.d").mkdir(parents=True)
    (root / "etc" / "tmpfiles.d").mkdir(parents=True)
    shutil.copy(SYSTEMD / "postbackd.sysusers", root / "etc/sysusers.d/postbackd.conf")
    shutil.copy(SYSTEMD / "postbackd.tmpfiles", root / "etc/tmpfiles.d/postbackd.conf")
    run = {"capture_output": True, "text": True, "timeout": 60}
    result = subprocess.run([sysusers, f"--root={root}"], **run)  # type: ignore[call-overload]
    assert result.returncode == 0, result.stderr
    passwd = (root / "etc" / "passwd").read_text().splitlines()
    (user,) = [line.split(":") for line in passwd if line.startswith("postbackd:")]
    assert user[6] == "/usr/sbin/nologin"
    result = subprocess.run([tmpfiles, f"--root={root}", "--create"], **run)  # type: ignore[call-overload]
    assert result.returncode == 0, result.stderr
    incoming = (root / "var/spool/postbackd/incoming").stat()
    assert oct(incoming.st_mode & 0o7777) == "0o2770"
    assert (incoming.st_uid, incoming.st_gid) == (int(user[2]), int(user[3]))
