"""Benchmark postbackd: `python bench/run.py [--quick] [--scenario NAME ...] [--note TEXT]`.

Starts everything itself on 127.0.0.1 — the daemon as a subprocess with a generated
configuration, a bare asyncio webhook receiver, a load generator (each in its own process)
and, for the email scenario, an aiosmtpd server — and stops it all at the end. Each scenario
prints a table row and writes ``<results>/<scenario>.json``: bench/results/ normally, a fresh
temporary folder with --quick, so a smoke run never overwrites the recorded results.
Exit status: 0 when every scenario completed with nothing lost (targets are reported, not
enforced), 1 otherwise. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench.harness import Bench
from bench.procfs import machine
from bench.report import Result
from bench.scenarios import faults, fleet, mail, reload, steady

Scenario = Callable[[Bench], Awaitable[Result]]
SCENARIOS: dict[str, Scenario] = {
    "steady": steady.steady,
    "reference": steady.reference,
    "latency": steady.latency,
    "flaky": faults.flaky,
    "backlog": faults.backlog,
    "reload": reload.reload,
    "durability": steady.durability,
    "email": mail.email,
    "fleet": fleet.fleet,
}
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test, < 1 min)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable; default: all)",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the full sizes (e.g. 0.2 to try out)"
    )
    parser.add_argument("--results", type=Path, help="where to write the JSON results")
    parser.add_argument("--note", default="", help="the conditions of this run, for the record")
    parser.add_argument(
        "--profile", type=Path, help="sample the daemon with py-spy into this folder"
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        help="offer this many events/s in the latency scenario (default: half of steady's rate)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="[daemon] workers of each daemon (the fleet scenario sets its own); default 1",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, spools)")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    names = args.scenario or list(SCENARIOS)
    results_dir = args.results or (
        Path(tempfile.mkdtemp(prefix="postbackd-bench-results-")) if args.quick else RESULTS
    )
    workdir = Path(tempfile.mkdtemp(prefix="postbackd-bench-"))
    about = machine()
    run_info = {
        "quick": args.quick,
        "scale": args.scale,
        "note": args.note,
        "scenarios": names,
        "workers": args.workers,
    }
    bench = Bench(
        quick=args.quick,
        workdir=workdir,
        scale=args.scale,
        profile_dir=args.profile,
        latency_rate=args.latency_rate,
        workers=args.workers,
    )
    failed: list[str] = []
    started = time.monotonic()
    try:
        await bench.start()
        reported: set[str] = set()
        for name in names:
            if name not in bench.results:
                begun, load = time.monotonic(), os.getloadavg()
                try:
                    result = await SCENARIOS[name](bench)
                except Exception as exc:
                    print(f"{name:<11} FAILED: {type(exc).__name__}: {exc}", flush=True)
                    failed.append(name)
                    continue
                result.seconds = round(time.monotonic() - begun, 1)
                result.load_before, result.load_after = load, os.getloadavg()
                bench.results[name] = result
            for done in [n for n in bench.results if n not in reported]:  # and what it ran first
                reported.add(done)
                bench.results[done].write(results_dir, about, run_info)
                print(bench.results[done].row(), flush=True)
                if not bench.results[done].nothing_lost:
                    failed.append(done)
    finally:
        bench.stop()
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"results: {results_dir} ({time.monotonic() - started:.0f} s)")
    if failed:
        print(f"not completed, or something lost: {', '.join(failed)}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
