"""flaky and backlog: retries, and a receiver that is down while work piles up.

- flaky: 10 % of first attempts are answered 500, the retry schedule is 1 s: every delivery
  must arrive, and the time to drain is reported.
- backlog: the receiver is down (connections refused) while the events are posted; the daemon
  is then restarted with everything still pending (time to readyz), the receiver comes back,
  and the backlog drains (rate, and peak RSS during the pile-up and during the drain).
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import Bench
from bench.report import Check, Result, rate
from bench.scenarios.common import burst, lost_count

FLAKY_EVENTS = (10_000, 1_000)
BACKLOG_EVENTS = (500_000, 3_000)
FLAKY_PERCENT = 10
BACKLOG_BATCH = 500


async def flaky(bench: Bench) -> Result:
    events = bench.sized(*FLAKY_EVENTS)
    run = await burst(
        bench, "flaky", events, flaky_percent=FLAKY_PERCENT, retry_schedule=("1s",) * 5
    )
    f = run.figures
    return Result(
        "flaky",
        f"{f['accepted']:,} events, {f['failed_first']:,} first attempts answered 500 "
        f"(retry after 1 s): all delivered in {f['delivery_seconds']:.1f} s "
        f"({f['deliveries_per_s']:,.0f}/s)",
        f,
        {**run.settings, "flaky_percent": FLAKY_PERCENT},
        run.expected,
        run.lost,
    )


async def backlog(bench: Bench) -> Result:
    events = bench.sized(*BACKLOG_EVENTS)
    run_dir, config = bench.config("backlog", retry_schedule=("1s",) * 10, breaker_cooldown="2s")
    await bench.rx("reset", 0)
    await bench.rx("down")
    daemon = bench.new_daemon(run_dir, config)
    figures: dict[str, Any] = {"events": events}
    try:
        daemon.start()
        await daemon.wait_ready()
        post = await bench.load(
            "post",
            {
                "url": daemon.base,
                "count": events,
                "batch": BACKLOG_BATCH,
                "concurrency": 4,
                "customers": 1000,
                "prefix": "backlog",
                "deadline": max(120.0, events / 500),
            },
        )
        expected = post["accepted"]
        figures["accepted"] = expected
        figures["refused"] = post["refused"] + post["errors"]
        figures["post_statuses"] = post["statuses"]
        figures["post_errors"] = post["error_kinds"]
        figures["refusals"] = post["refusals"]
        figures["pile_up_seconds"] = round(post["ended"] - post["started"], 1)
        piling = post["ended"] - post["started"]
        figures["pile_up_accepted_per_s"] = round(rate(expected, piling), 1)
        figures["pile_up_peak_rss_mb"] = round(daemon.memory()[1], 1)
        figures["stop_seconds"] = round(daemon.stop(), 2)
        counts = daemon.counts()
        figures["pending_at_restart"] = counts.get("pending", 0)
        figures["spool_mb"] = round(config.spool.stat().st_size / 2**20, 1)
        daemon.start()
        ready = await daemon.wait_ready()
        figures["restart_ready_seconds"] = round(ready, 2)
        up_at = time.time()
        await bench.rx("up")
        stats = await bench.wait_delivered(expected, timeout=max(120.0, expected / 100))
        drain = (stats["last_at"] or time.time()) - up_at
        figures["delivered"] = stats["delivered"]
        figures["drain_seconds"] = round(drain, 1)
        figures["drain_per_s"] = round(rate(stats["delivered"], drain), 1)
        figures["drain_peak_rss_mb"] = round(daemon.memory()[1], 1)
        await daemon.settle(expected, timeout=120)
    finally:
        daemon.stop()
        await bench.rx("up")
    counts = daemon.counts()
    figures["spool"] = counts
    checks = [
        Check("ready s", figures["restart_ready_seconds"], 2.0, False),
        Check(
            "peak RSS MB",
            max(figures["pile_up_peak_rss_mb"], figures["drain_peak_rss_mb"]),
            150,
            False,
        ),
    ]
    steady_rate = bench.steady_rate()
    if steady_rate:
        share = figures["drain_per_s"] / steady_rate
        figures["drain_over_steady"] = round(share, 3)
        checks.append(Check("drain/steady", share, 0.8, True))
    return Result(
        "backlog",
        f"{expected:,} pending: drained at {figures['drain_per_s']:,}/s, ready "
        f"{figures['restart_ready_seconds']} s after restart, peak RSS "
        f"{figures['pile_up_peak_rss_mb']} MB piling up / {figures['drain_peak_rss_mb']} MB "
        "draining",
        figures,
        config.settings(),
        events,
        lost_count(events, figures["delivered"], counts),
        checks,
    )
