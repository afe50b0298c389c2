"""What every scenario shares: the helper processes, a fresh daemon per run, waiting with bounds.

The receiver and the load generator are started once per `bench/run.py` and reused; each
scenario gets its own configuration directory, spool and daemon, stopped at its end.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import loadgen, receiver
from bench.child import Child
from bench.conf import BenchConfig, write_config
from bench.daemonproc import BenchDaemon
from bench.procfs import cpu_seconds
from bench.report import Result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Bench:
    quick: bool
    workdir: Path
    scale: float = 1.0
    profile_dir: Path | None = None
    latency_rate: float | None = None  # --latency-rate: the latency scenario's fixed load
    workers: int = 1  # --workers: [daemon] workers of every daemon a scenario does not set
    results: dict[str, Result] = field(default_factory=dict)
    receiver: Child | None = None
    loadgen: Child | None = None
    receiver_port: int = 0
    steady_conf: Path | None = None
    _runs: int = 0

    def helper_cpu(self) -> dict[str, float]:
        """CPU seconds used so far by the receiver and the load generator."""
        assert self.receiver is not None and self.loadgen is not None
        return {
            "receiver": cpu_seconds(self.receiver.pid),
            "loadgen": cpu_seconds(self.loadgen.pid),
        }

    def sized(self, full: int, quick: int) -> int:
        """A scenario's size: `quick` with --quick, else `full` times --scale."""
        return quick if self.quick else max(1, round(full * self.scale))

    async def start(self) -> None:
        self.receiver = Child("receiver", receiver.serve)
        self.receiver_port = await self.receiver.start()
        self.loadgen = Child("loadgen", loadgen.serve)
        await self.loadgen.start()

    def stop(self) -> None:
        for child in (self.loadgen, self.receiver):
            if child is not None:
                child.stop()

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}/hook"

    async def rx(self, *request: Any, timeout: float = 30.0) -> Any:
        assert self.receiver is not None
        return await self.receiver.call(*request, timeout=timeout)

    async def load(self, job: str, spec: dict[str, Any]) -> dict[str, Any]:
        assert self.loadgen is not None
        result: dict[str, Any] = await self.loadgen.call(job, spec, timeout=spec["deadline"] + 120)
        return result

    def config(self, name: str, **overrides: Any) -> tuple[Path, BenchConfig]:
        """A fresh directory for one daemon run, with its configuration written."""
        self._runs += 1
        run_dir = self.workdir / f"{self._runs:02d}-{name}"
        spool = overrides.pop("spool", run_dir / "spool.db")
        settings = {"receiver_url": self.receiver_url, "workers": self.workers, **overrides}
        config = BenchConfig(port=free_port(), spool=spool, **settings)
        write_config(run_dir / "conf.d", config)
        return run_dir, config

    def new_daemon(self, run_dir: Path, config: BenchConfig) -> BenchDaemon:
        profile = None if self.profile_dir is None else self.profile_dir / run_dir.name
        return BenchDaemon(run_dir / "conf.d", config.port, config.spool, profile=profile)

    def steady_rate(self) -> float | None:
        """Deliveries/s of this run's steady scenario, if it ran."""
        steady = self.results.get("steady")
        return None if steady is None else float(steady.figures["deliveries_per_s"])

    @asynccontextmanager
    async def daemon(self, run_dir: Path, config: BenchConfig) -> AsyncIterator[BenchDaemon]:
        daemon = self.new_daemon(run_dir, config)
        daemon.start()
        try:
            daemon.ready_seconds = await daemon.wait_ready()
            yield daemon
        finally:
            daemon.stop()

    async def wait_delivered(self, expected: int, timeout: float) -> dict[str, Any]:
        """Poll the receiver until `expected` distinct deliveries arrived (or the deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            stats: dict[str, Any] = await self.rx("stats")
            if stats["delivered"] >= expected or time.monotonic() > deadline:
                return stats
            await asyncio.sleep(0.05 if expected - stats["delivered"] < 1000 else 0.2)
