"""What the harness reads about processes and the machine: CPU time and memory from /proc.

Linux only (the daemon's deployment target); psutil is not a dependency, and /proc answers
for any process of ours without one.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (its threads included)."""
    return cpu_seconds_of(Path(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time per thread id (the main thread's id is the pid; SQLite runs on others)."""
    times: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            times[int(task.name)] = cpu_seconds_of(task / "stat")
        except (FileNotFoundError, ProcessLookupError):
            continue
    return times


def family_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children alive now (a PostgreSQL server: the postmaster
    and its backends, checkpointer, WAL writer...). A child that exited meanwhile takes its
    time with it, so the caller keeps its connections open across a measurement."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def cpu_seconds_of(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB; the peak is the kernel's high-water mark (VmHWM)."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def machine() -> dict[str, Any]:
    """The machine, Python and library versions a result was measured with."""
    model = ""
    with Path("/proc/cpuinfo").open() as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "versions": {name: _version(name) for name in _PACKAGES},
        "commit": _commit(),
    }


_PACKAGES = ("postbackd", "aiohttp", "uvloop", "orjson", "jinja2", "aiosmtplib", "aiosmtpd")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None
