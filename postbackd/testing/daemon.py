"""`PostbackdDaemon`: ``postbackd run`` as a subprocess on a generated configuration directory.

`daemon_files` builds the configuration (HTTP intake on a free port, a fast retry schedule,
the test's plugin directory); the daemon's admin API is then driven over real HTTP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import tomli_w

from postbackd import jsoncodec
from postbackd.events import Event
from postbackd.testing.waiting import until, until_async

FINAL_STATES = frozenset({"done", "dead", "failed", "cancelled"})

_launched: list[subprocess.Popen[bytes]] = []
"""Every daemon process started by `PostbackdDaemon.launch`, so none outlives its test."""


def stop_launched() -> None:
    """Stop every daemon process launched so far that is still running (SIGTERM, then
    SIGKILL): a test that forgot `stop`, or failed before it, must not leave a daemon behind
    holding its port, its spool and a share of the CPU the next tests need."""
    while _launched:
        _terminate(_launched.pop())


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class PostbackdDaemon:
    """One daemon on a generated configuration directory; see the `postbackd_daemon` fixture."""

    conf_dir: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    token: str | None = None  # sent as the bearer token when the configuration sets one
    log_level: str | None = None  # ``postbackd --log-level LEVEL run``; None: the default
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, name: str, content: str | Mapping[str, Any]) -> Path:
        """Write a file of the configuration directory (a mapping is written as TOML)."""
        path = self.conf_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else tomli_w.dumps(dict(content)))
        return path

    def write_files(self, files: Mapping[str, str | Mapping[str, Any]]) -> None:
        """`write` each of ``{name: content}``."""
        for name, content in files.items():
            self.write(name, content)

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run another ``postbackd`` command on this configuration (``check``, ``plugins``)."""
        return subprocess.run(
            [sys.executable, "-m", "postbackd", *args, "-c", str(self.conf_dir)],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=60,
            check=False,
        )

    def launch(self) -> None:
        """Start the process without waiting (see `start` and `wait_ready`)."""
        self.log_path = self.conf_dir.parent / f"{self.conf_dir.name}-{time.monotonic_ns()}.log"
        self.process = subprocess.Popen(
            [*self._postbackd(), "run", "-c", str(self.conf_dir), *self.args],
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("wb"),
            env={**os.environ, **self.env},
        )
        _launched.append(self.process)

    def _postbackd(self) -> list[str]:
        level = () if self.log_level is None else ("--log-level", self.log_level)
        return [sys.executable, "-m", "postbackd", *level]

    async def start(self, timeout: float = 20.0) -> PostbackdDaemon:
        """Start the daemon and wait until ``/readyz`` says ready; fails with its log if not."""
        self.launch()
        return await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 20.0) -> PostbackdDaemon:
        """Wait until ``/readyz`` says ready (after `launch`, or a restart of the sources)."""
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.exit_code() is not None:
                    raise AssertionError(f"daemon exited with {self.exit_code()}:\n{self.logs()}")
                try:
                    async with session.get(f"{self.base_url}/readyz") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"daemon not ready within {timeout}s:\n{self.logs()}")

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the daemon's HTTP API; answers (status, decoded JSON or text)."""
        data = None if body is None else jsoncodec.dumps(body)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, f"{self.base_url}{path}", data=data, headers=headers
            ) as response,
        ):
            text = await response.text()
            try:
                return response.status, jsoncodec.loads(text)
            except ValueError:
                return response.status, text

    async def post(
        self,
        payload: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """POST to ``/v1/events`` as any client might — `payload` as JSON, or `raw` bytes as they
        are — and answer (status, decoded JSON or text) without judging it; `token` replaces
        the daemon's bearer token for this request."""
        bearer = self.token if token is None else token
        sent = {"Content-Type": "application/json"}
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        sent.update(headers or {})
        body = raw if raw is not None else jsoncodec.dumps(payload)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.base_url}/v1/events", data=body, headers=sent) as response,
        ):
            text = await response.text()
            try:
                return response.status, jsoncodec.loads(text)
            except ValueError:
                return response.status, text

    async def get(self, path: str) -> tuple[int, Any]:
        """``GET path`` of the daemon's HTTP API (see `request`)."""
        return await self.request("GET", path)

    async def submit(self, *events: Mapping[str, Any] | Event) -> dict[str, Any]:
        """POST events to ``/v1/events``; asserts they were accepted (202)."""
        payload = [e.to_dict() if isinstance(e, Event) else dict(e) for e in events]
        status, answer = await self.request("POST", "/v1/events", payload)
        assert status == 202, f"events refused with {status}: {answer}"
        return dict(answer)

    async def deliveries(self, **query: str) -> list[dict[str, Any]]:
        params = "&".join(f"{key}={value}" for key, value in {"limit": "500", **query}.items())
        status, answer = await self.request("GET", f"/v1/deliveries?{params}")
        assert status == 200, answer
        return list(answer["deliveries"])

    async def delivery(self, delivery_id: str) -> dict[str, Any]:
        """One delivery with its attempts (the request log)."""
        status, answer = await self.request("GET", f"/v1/deliveries/{delivery_id}")
        assert status == 200, answer
        return dict(answer)

    async def wait_for_deliveries(
        self,
        count: int = 1,
        *,
        states: Iterable[str] = FINAL_STATES,
        timeout: float = 15.0,
        **query: str,
    ) -> list[dict[str, Any]]:
        """Deliveries once `count` of them are in one of `states`; fails after `timeout`."""
        wanted = frozenset(states)
        found: list[dict[str, Any]] = []

        async def reached() -> bool:
            found[:] = [d for d in await self.deliveries(**query) if d["state"] in wanted]
            return len(found) >= count

        await until_async(reached, timeout, f"{count} deliveries in {sorted(wanted)}")
        return found

    async def metrics(self) -> str:
        status, text = await self.request("GET", "/metrics")
        assert status == 200, text
        return str(text)

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    async def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the process to end by itself (a start-up that fails); its exit code."""
        await until(lambda: self.exit_code() is not None, timeout, "the daemon to exit")
        return int(self.process.returncode)  # type: ignore[union-attr]

    def signal(self, sig: signal.Signals) -> None:
        """Send the daemon a real signal (SIGHUP reloads, SIGKILL crashes it)."""
        assert self.process is not None, "the daemon was not started"
        self.process.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process is not None:
            _terminate(self.process)

    def logs(self) -> str:
        """What the daemon wrote on stderr (JSON log lines)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")


def daemon_files(
    *,
    port: int,
    spool: Path,
    triggers: Iterable[Mapping[str, Any]] = (),
    customers: Iterable[str] = ("acme",),
    plugin_dirs: Iterable[Path] = (),
    daemon: Mapping[str, Any] | None = None,
    sources: Mapping[str, Any] | None = None,
    deliveries: Mapping[str, Any] | None = None,
    sla: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The TOML (as a mapping) of a test configuration: HTTP intake on `port`, fast retries.

    A trigger needs ``delivery`` (and its ``options``); ``name``, ``customer`` (the first),
    ``events`` (all), ``template`` (``builtin:order-status-json``) and a 0.2 s retry schedule
    of three steps are filled in. `sources` are added to the HTTP intake on `port`; give
    ``"http": None`` to run without it (the admin API then listens on `port` alone).
    `sla` are ``[[sla]]`` rules, as written (``name``, ``after``, ``expect``, ``within``,
    ``emit``).
    """
    customer_ids = list(customers)
    merged = {"http": {"listen": f"127.0.0.1:{port}"}, **(sources or {})}
    all_sources = {name: table for name, table in merged.items() if table is not None}
    settings: dict[str, Any] = {
        "spool": str(spool),
        "allow_private_destinations": True,
        "grace": "5s",
        "plugin_dirs": [str(p) for p in plugin_dirs],
        **(daemon or {}),
    }
    if "http" not in all_sources:
        settings.setdefault("admin_listen", f"127.0.0.1:{port}")
    defaults = {
        "customer": customer_ids[0],
        "events": ["order.*"],
        "template": "builtin:order-status-json",
        "retry_schedule": ["200ms", "200ms", "200ms"],
    }
    files: dict[str, Any] = {"daemon": settings, "sources": all_sources}
    if deliveries:
        files["deliveries"] = dict(deliveries)
    if sla:
        files["sla"] = [dict(rule) for rule in sla]
    return {
        **files,
        "customer": [{"id": c, "name": c.title()} for c in customer_ids],
        "trigger": [
            {"name": f"trigger-{index}", **defaults, **trigger}
            for index, trigger in enumerate(triggers)
        ],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
