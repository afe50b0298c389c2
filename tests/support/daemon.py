"""The daemon as a real subprocess, with a generated configuration directory.

`DaemonProcess` writes TOML files, starts ``python -m postbackd run -c DIR``, waits until
``/readyz`` answers, and stops it with a real signal (SIGTERM, or SIGKILL for crash tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhook_config(
    receiver_url: str,
    *,
    port: int,
    spool: Path | str,
    extra_trigger: str = "",
    daemon_extra: str = "",
    token: str | None = None,
) -> dict[str, str]:
    """A one-customer configuration that posts every order event to `receiver_url`."""
    token_line = f'token = "{token}"' if token else ""
    return {
        "daemon.toml": f"""
[daemon]
spool = "{spool}"
allow_private_destinations = true
grace = "5s"
{daemon_extra}

[sources.http]
listen = "127.0.0.1:{port}"
{token_line}
""",
        "acme.toml": f"""
[[customer]]
id = "acme"
name = "Acme Prints"

[[trigger]]
name = "acme-all"
customer = "acme"
events = ["order.*"]
template = "builtin:order-status-json"
delivery = "webhook"
retry_schedule = ["200ms", "200ms", "200ms"]
{extra_trigger}
[trigger.options]
url = "{receiver_url}"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
""",
    }


@dataclass
class DaemonProcess:
    conf_dir: Path
    port: int
    token: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, files: dict[str, str]) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = self.conf_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def start(self) -> None:
        self.log_path = self.conf_dir.parent / f"daemon-{int(time.time() * 1000)}.log"
        env = {**os.environ, **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "postbackd", "run", "-c", str(self.conf_dir)],
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("wb"),
            env=env,
        )

    async def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"daemon exited with {self.process.returncode}:\n{self.logs()}"
                    )
                try:
                    async with session.get(f"{self.base}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"daemon not ready within {timeout}s:\n{self.logs()}")

    async def post(
        self, payload: Any, *, token: str | None = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        bearer = token if token is not None else self.token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        body = raw if raw is not None else json.dumps(payload).encode()
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.base}/v1/events", data=body, headers=headers) as response,
        ):
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def get(self, path: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.base}{path}", headers=headers) as response,
        ):
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self) -> str:
        return (
            self.log_path.read_text(errors="replace")
            if self.log_path and self.log_path.exists()
            else ""
        )


def event(
    event_id: str, type_: str = "order.shipped", order: str = "o-1", **data: Any
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": type_,
        "customer": "acme",
        "data": {
            "orderId": order,
            "orderReferenceId": f"ref-{order}",
            "fulfillmentStatus": type_.split(".")[-1],
            **data,
        },
    }
