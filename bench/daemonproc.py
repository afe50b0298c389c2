"""The daemon under test: `postbackd --log-level warning run -c DIR` as a subprocess.

Readiness is `/readyz` answering 200; CPU and memory come from /proc; the spool is counted
with a read-only SQLite connection (WAL lets it read while the daemon writes), or in the
PostgreSQL database a fleet scenario's nodes share.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

from bench.procfs import family_cpu_seconds, memory_mb, thread_cpu_seconds

# py-spy samples the thread holding the interpreter lock; BENCH_PROFILE=threads samples every
# thread while it runs (SQLite's work without the lock included), one stack per thread.
_SPY_MODE = ("--threads",) if os.environ.get("BENCH_PROFILE") == "threads" else ("--gil",)
FINAL = ("done", "dead", "failed", "cancelled")


class DaemonError(RuntimeError):
    """The daemon exited, or did not become ready, when the harness needed it."""


class BenchDaemon:
    def __init__(
        self, conf_dir: Path, port: int, spool: Path | str, *, profile: Path | None = None
    ):
        self.conf_dir = conf_dir
        self.port = port
        self.spool = spool
        self.profile = profile
        self.base = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_seconds = 0.0
        self._profiler: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self._starts += 1
        log = self.conf_dir.parent / f"daemon-{self._starts}.log"
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "postbackd", "--log-level", "warning", "run", "-c",
             str(self.conf_dir)],
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
            cwd=self.conf_dir.parent,
        )  # fmt: skip
        self.log_path = log

    async def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from start to the first 200 from /readyz."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    async with session.get(f"{self.base}/readyz") as answer:
                        if answer.status == 200:
                            ready = time.monotonic() - self.started_at
                            self._start_profiler()
                            return ready
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.01)
        raise DaemonError(f"daemon not ready within {timeout:g}s:\n{self.logs()}")

    def cpu(self) -> float:
        """CPU seconds of the daemon and its delivery workers (`[daemon] workers`)."""
        return family_cpu_seconds(self.pid)

    def thread_cpu(self) -> dict[int, float]:
        return thread_cpu_seconds(self.pid)

    def memory(self) -> tuple[float, float]:
        return memory_mb(self.pid)

    async def reload(self) -> tuple[float, dict[str, Any]]:
        """POST /v1/reload; (seconds until the answer, the answer)."""
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with session.post(f"{self.base}/v1/reload") as answer:
                body = await answer.json()
            return time.monotonic() - started, body

    def stop(self, timeout: float = 60.0) -> float:
        """SIGTERM and wait; seconds until it exited (killed after `timeout`)."""
        self._stop_profiler()
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise DaemonError(f"daemon did not stop within {timeout:g}s") from None
        return time.monotonic() - started

    def counts(self) -> dict[str, int]:
        """Deliveries in the spool by state."""
        rows = self._query("SELECT state, count(*) FROM deliveries GROUP BY state")
        return {state: count for state, count in rows}

    def attempts_by_node(self) -> dict[str, int]:
        """Attempts in the request log per node that made them (a PostgreSQL spool)."""
        rows = self._query("SELECT coalesce(node, ''), count(*) FROM attempts GROUP BY 1")
        return {node: count for node, count in rows}

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of `sql` on the spool: a read-only SQLite connection (WAL lets it read while
        the daemon writes), or PostgreSQL on a thread of its own (callers may be on a loop)."""
        if isinstance(self.spool, str):
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, _pg_rows(self.spool, sql)).result(60)
        conn = sqlite3.connect(f"file:{self.spool}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    async def settle(self, expected: int, timeout: float) -> dict[str, int]:
        """Wait until `expected` deliveries reached a final state; the counts at the end."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            counts = await asyncio.to_thread(self.counts)
            if sum(counts.get(s, 0) for s in FINAL) >= expected or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.25)

    def logs(self) -> str:
        path = getattr(self, "log_path", None)
        return path.read_text(errors="replace")[-4000:] if path and path.exists() else ""

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise DaemonError(f"daemon exited with {self.process.returncode}:\n{self.logs()}")

    def _start_profiler(self) -> None:
        """With --profile: py-spy (if installed) samples the daemon until it stops."""
        if self.profile is None or self._profiler is not None:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            return
        self.profile.parent.mkdir(parents=True, exist_ok=True)
        output = self.profile.with_name(f"{self.profile.name}-{self._starts}.txt")
        self._profiler = subprocess.Popen(
            [spy, "record", "--pid", str(self.pid), "--format", "raw", "--rate", "200",
             "--nonblocking", "--subprocesses", *_SPY_MODE, "-o", str(output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _stop_profiler(self) -> None:
        profiler, self._profiler = self._profiler, None
        if profiler is not None and profiler.poll() is None:
            profiler.send_signal(signal.SIGINT)
            try:
                profiler.wait(30)
            except subprocess.TimeoutExpired:
                profiler.kill()
                profiler.wait(5)


async def _pg_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [tuple(row.values()) for row in await conn.fetch(sql)]
    finally:
        await conn.close()
