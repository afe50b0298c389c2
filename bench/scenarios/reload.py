"""reload: a configuration of one file per customer, reloaded while events keep coming.

The time of a full reload is the round trip of ``POST /v1/reload`` (it answers once the new
generation is in force). Events are posted at a constant rate during the reloads; every one
must be accepted (no 503) and delivered.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.harness import Bench
from bench.report import Check, Result, percentile
from bench.scenarios.common import lost_count

CUSTOMERS = (5_000, 300)
RELOADS = (10, 3)
RATE = 200.0  # events/s posted while reloading
PAUSE = 0.2  # seconds between two reloads


async def reload(bench: Bench) -> Result:
    customers = bench.sized(*CUSTOMERS)
    reloads = bench.sized(*RELOADS)
    run_dir, config = bench.config("reload", customers=customers, file_per_customer=True)
    await bench.rx("reset", 0)
    times: list[float] = []
    async with bench.daemon(run_dir, config) as daemon:
        warm, answer = await daemon.reload()
        if not answer.get("ok"):
            raise RuntimeError(f"reload refused: {answer}")
        seconds = reloads * (warm + PAUSE) + 2.0
        events = round(RATE * seconds)
        posting = asyncio.create_task(
            bench.load(
                "post",
                {
                    "url": daemon.base,
                    "count": events,
                    "batch": 10,
                    "rate": RATE,
                    "concurrency": 32,
                    "customers": customers,
                    "prefix": "reload",
                    "deadline": seconds * 3 + 30,
                },
            )
        )
        await asyncio.sleep(1.0)
        for _ in range(reloads):
            took, answer = await daemon.reload()
            if not answer.get("ok"):
                raise RuntimeError(f"reload refused: {answer}")
            times.append(took)
            await asyncio.sleep(PAUSE)
        post = await posting
        expected = post["accepted"]
        stats = await bench.wait_delivered(expected, timeout=60)
        await daemon.settle(expected, timeout=60)
        generation = answer.get("generation")
        ready = daemon.ready_seconds
    counts = daemon.counts()
    refused = post["refused"] + post["errors"]
    figures: dict[str, Any] = {
        "customer_files": customers,
        "startup_ready_seconds": round(ready, 2),
        "reloads": reloads,
        "reload_seconds": [round(t, 3) for t in times],
        "reload_p50_seconds": round(percentile(times, 0.5), 3),
        "reload_max_seconds": round(max(times), 3),
        "first_reload_seconds": round(warm, 3),
        "generation": generation,
        "events": events,
        "accepted": expected,
        "refused": refused,
        "refused_statuses": post["statuses"],
        "delivered": stats["delivered"],
        "spool": counts,
    }
    return Result(
        "reload",
        f"{customers:,} customer files: reload p50 {figures['reload_p50_seconds']} s, "
        f"max {figures['reload_max_seconds']} s; {expected:,} events during {reloads} reloads, "
        f"{refused} refused",
        figures,
        {**config.settings(), "rate": RATE},
        events,
        lost_count(events, stats["delivered"], counts),
        [Check("reload p50 s", figures["reload_p50_seconds"], 1.5, False)],
    )
