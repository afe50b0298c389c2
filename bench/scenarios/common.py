"""The measurement every throughput scenario makes: post a burst of events, wait for delivery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.daemonproc import BenchDaemon
from bench.harness import Bench
from bench.report import percentile, rate

POST_BATCH = 100
POST_CONCURRENCY = 4


@dataclass(frozen=True)
class Burst:
    """What one burst run measured."""

    figures: dict[str, Any]
    settings: dict[str, Any]
    expected: int
    lost: int
    run_dir: Any


def lost_count(sent: int, delivered: int, counts: dict[str, int]) -> int:
    """Events sent whose delivery did not arrive or is not recorded as done.

    An event the daemon refused counts too: nothing in the benchmark justifies a refusal.
    """
    return max(sent - delivered, sent - counts.get("done", 0), 0)


async def burst(
    bench: Bench, name: str, events: int, *, flaky_percent: int = 0, **overrides: Any
) -> Burst:
    """Post `events` as fast as the daemon takes them; measure until the last one arrived.

    `flaky_percent` of first attempts are answered 500 by the receiver.
    """
    run_dir, config = bench.config(name, **overrides)
    await bench.rx("reset", flaky_percent)
    async with bench.daemon(run_dir, config) as daemon:
        figures = await measure_burst(bench, daemon, events, prefix=name)
    counts = daemon.counts()
    lost = lost_count(events, figures["delivered"], counts)
    figures["spool"] = counts
    return Burst(figures, config.settings(), events, lost, run_dir)


def thread_split(
    pid: int, before: dict[int, float], after: dict[int, float]
) -> tuple[float, float]:
    """CPU seconds used meanwhile by the main (event loop) thread and by all others (SQLite)."""
    used = {tid: seconds - before.get(tid, 0.0) for tid, seconds in after.items()}
    main = used.pop(pid, 0.0)
    return main, sum(used.values())


async def measure_burst(
    bench: Bench, daemon: BenchDaemon, events: int, *, prefix: str
) -> dict[str, Any]:
    cpu_before = daemon.cpu()
    threads_before = daemon.thread_cpu()
    helpers_before = bench.helper_cpu()
    post = await bench.load(
        "post",
        {
            "url": daemon.base,
            "count": events,
            "batch": POST_BATCH,
            "concurrency": POST_CONCURRENCY,
            "customers": 1000,
            "prefix": prefix,
            "deadline": max(60.0, events / 200),
        },
    )
    expected = post["accepted"]
    stats = await bench.wait_delivered(expected, timeout=max(60.0, expected / 200))
    cpu_used = daemon.cpu() - cpu_before
    threads = thread_split(daemon.pid, threads_before, daemon.thread_cpu())
    helpers = {name: used - helpers_before[name] for name, used in bench.helper_cpu().items()}
    rss, peak = daemon.memory()
    counts = await daemon.settle(expected, timeout=60)
    latencies = await bench.rx("latencies", timeout=60)
    elapsed = (stats["last_at"] or post["ended"]) - post["started"]
    return {
        "events": events,
        "accepted": expected,
        "refused": post["refused"] + post["errors"],
        "refusals": post["refusals"],
        "delivered": stats["delivered"],
        "duplicates": stats["duplicates"],
        "requests": stats["requests"],
        "failed_first": stats["failed_first"],
        "post_seconds": round(post["ended"] - post["started"], 3),
        "accepted_per_s": round(rate(expected, post["ended"] - post["started"]), 1),
        "delivery_seconds": round(elapsed, 3),
        "deliveries_per_s": round(rate(stats["delivered"], elapsed), 1),
        "latency_p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "cpu_s_per_1000": round(cpu_used / max(1, stats["delivered"]) * 1000, 3),
        "cpu_s_per_1000_main_thread": round(threads[0] / max(1, stats["delivered"]) * 1000, 3),
        "cpu_s_per_1000_other_threads": round(threads[1] / max(1, stats["delivered"]) * 1000, 3),
        # [daemon] workers: what the worker processes used (the family less the main process)
        "cpu_s_per_1000_workers": round(
            (cpu_used - sum(threads)) / max(1, stats["delivered"]) * 1000, 3
        ),
        "receiver_cpu_s_per_1000": round(helpers["receiver"] / max(1, stats["requests"]) * 1000, 3),
        "loadgen_cpu_s_per_1000": round(helpers["loadgen"] / max(1, events) * 1000, 3),
        "rss_mb": round(rss, 1),
        "peak_rss_mb": round(peak, 1),
        "spool_during": counts,
    }
