"""The benchmark as a smoke test: every scenario of ``bench/run.py --quick`` completes and
loses nothing. Timings are not asserted (CI machines vary); the recorded results in
bench/results/ are untouched, since --results points at a temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.pg_fixtures import PgCluster, pg_cluster

__all__ = ["pg_cluster"]

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = (
    "steady",
    "reference",
    "latency",
    "flaky",
    "backlog",
    "reload",
    "durability",
    "email",
    "fleet",
)


def test_every_scenario_completes_with_nothing_lost(tmp_path: Path, pg_cluster: PgCluster) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--results", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,  # a bound on a stuck run, not a performance check
        check=False,
        env={**os.environ, "POSTBACKD_BENCH_PG": pg_cluster.url},  # the fleet scenario's server
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in SCENARIOS:
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["nothing_lost"], result
        assert result["lost"] == 0 and result["expected"] > 0, result
    assert "nothing lost" in done.stdout
