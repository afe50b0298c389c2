"""steady, reference, latency and durability: throughput and latency of the event path.

- steady: a burst of events (batches over HTTP) to 1,000 customers, one webhook each.
- reference: the same rendered bodies POSTed by a plain aiohttp client, same concurrency,
  no spool — the practical ceiling; steady ÷ reference is the headline ratio.
- latency: half of the steady throughput offered at a constant rate; post → receipt.
- durability: steady with synchronous = FULL, then NORMAL.
"""

from __future__ import annotations

import time

from bench.harness import Bench
from bench.report import Check, Result, percentile, rate
from bench.scenarios.common import burst, lost_count

STEADY_EVENTS = (50_000, 2_000)  # (full, --quick)
DURABILITY_EVENTS = (20_000, 600)
LATENCY_SECONDS = (30, 2)
LATENCY_SHARE = 0.5
DEFAULT_STEADY_RATE = 1000.0


async def steady(bench: Bench) -> Result:
    run = await burst(bench, "steady", bench.sized(*STEADY_EVENTS))
    f = run.figures
    bench.steady_conf = run.run_dir / "conf.d"
    return Result(
        "steady",
        f"{f['deliveries_per_s']:,.0f} deliveries/s, {f['accepted_per_s']:,.0f} accepted/s, "
        f"p50 {f['latency_p50_ms']} ms, p99 {f['latency_p99_ms']} ms, "
        f"{f['cpu_s_per_1000']} CPU s/1000, peak RSS {f['peak_rss_mb']} MB",
        f,
        run.settings,
        run.expected,
        run.lost,
        [Check("deliveries/s", f["deliveries_per_s"], 3000, True)],
    )


async def ensure_steady(bench: Bench) -> Result:
    """This run's steady result, running the scenario first if it has not run yet."""
    if "steady" not in bench.results:
        begun = time.monotonic()
        result = await steady(bench)
        result.seconds = round(time.monotonic() - begun, 1)
        bench.results["steady"] = result
    return bench.results["steady"]


async def reference(bench: Bench) -> Result:
    steady_result = await ensure_steady(bench)
    events = bench.sized(*STEADY_EVENTS)
    concurrency = steady_result.settings["concurrency"]
    await bench.rx("reset", 0)
    before = bench.helper_cpu()["receiver"]
    ref = await bench.load(
        "reference",
        {
            "conf_dir": str(bench.steady_conf),
            "target": bench.receiver_url,
            "count": events,
            "customers": 1000,
            "prefix": "steady",
            "concurrency": concurrency,
            "deadline": max(60.0, events / 200),
        },
    )
    stats = await bench.wait_delivered(ref["requests"], timeout=30)
    receiver_cpu = bench.helper_cpu()["receiver"] - before
    per_s = rate(ref["requests"], ref["ended"] - ref["started"])
    ratio = steady_result.figures["deliveries_per_s"] / per_s if per_s else 0.0
    figures = {
        "requests": ref["requests"],
        "errors": ref["errors"],
        "statuses": ref["statuses"],
        "requests_per_s": round(per_s, 1),
        "steady_deliveries_per_s": steady_result.figures["deliveries_per_s"],
        "ratio": round(ratio, 3),
        "client_cpu_s_per_1000": round(ref["cpu_seconds"] / max(1, ref["requests"]) * 1000, 3),
        "receiver_cpu_s_per_1000": round(receiver_cpu / max(1, stats["requests"]) * 1000, 3),
    }
    return Result(
        "reference",
        f"{per_s:,.0f} requests/s (plain aiohttp, no spool); steady/reference = {ratio:.2f}",
        figures,
        {"concurrency": concurrency, "client": "aiohttp.ClientSession, one TCPConnector(limit=0)"},
        ref["requests"],
        max(0, ref["requests"] - stats["delivered"]),
        [Check("ratio", ratio, 0.5, True)],
    )


async def latency(bench: Bench) -> Result:
    if bench.latency_rate:  # --latency-rate: a fixed load, to compare two versions at the same
        offered = bench.latency_rate
    else:
        steady = (await ensure_steady(bench)).figures["deliveries_per_s"] or DEFAULT_STEADY_RATE
        offered = steady * LATENCY_SHARE
    seconds = bench.sized(*LATENCY_SECONDS)
    events = max(100, round(offered * seconds))
    batch = max(1, round(offered / 100))  # about 100 requests/s
    run_dir, config = bench.config("latency")
    await bench.rx("reset", 0)
    async with bench.daemon(run_dir, config) as daemon:
        post = await bench.load(
            "post",
            {
                "url": daemon.base,
                "count": events,
                "batch": batch,
                "rate": offered,
                "concurrency": 64,
                "customers": 1000,
                "prefix": "latency",
                "deadline": seconds * 3 + 30,
            },
        )
        expected = post["accepted"]
        stats = await bench.wait_delivered(expected, timeout=60)
        await daemon.settle(expected, timeout=60)
        latencies = await bench.rx("latencies", timeout=60)
    counts = daemon.counts()
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    figures = {
        "offered_per_s": round(offered, 1),
        "achieved_post_per_s": round(rate(events, post["ended"] - post["started"]), 1),
        "batch": batch,
        "late_batches": post["late_batches"],
        "events": events,
        "accepted": expected,
        "refused": post["refused"] + post["errors"],
        "delivered": stats["delivered"],
        "latency_p50_ms": round(p50, 1),
        "latency_p90_ms": round(percentile(latencies, 0.9) * 1000, 1),
        "latency_p99_ms": round(p99, 1),
        "latency_max_ms": round(max(latencies, default=0) * 1000, 1),
        "spool": counts,
    }
    return Result(
        "latency",
        f"{offered:,.0f} events/s offered: p50 {p50:.1f} ms, p99 {p99:.1f} ms",
        figures,
        {**config.settings(), "seconds": seconds},
        events,
        lost_count(events, stats["delivered"], counts),
        [Check("p99 ms", p99, 25, False)],
    )


async def durability(bench: Bench) -> Result:
    events = bench.sized(*DURABILITY_EVENTS)
    full = await burst(bench, "durability-full", events, synchronous="FULL")
    normal = await burst(bench, "durability-normal", events, synchronous="NORMAL")
    f_rate, n_rate = full.figures["deliveries_per_s"], normal.figures["deliveries_per_s"]
    figures = {
        "full": full.figures,
        "normal": normal.figures,
        "normal_over_full": round(n_rate / f_rate, 3) if f_rate else None,
    }
    return Result(
        "durability",
        f"FULL {f_rate:,.0f}/s (p99 {full.figures['latency_p99_ms']} ms), "
        f"NORMAL {n_rate:,.0f}/s (p99 {normal.figures['latency_p99_ms']} ms)",
        figures,
        {"full": full.settings, "normal": normal.settings},
        full.expected + normal.expected,
        full.lost + normal.lost,
    )
