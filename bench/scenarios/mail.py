"""email: postbacks as mail to a local aiosmtpd, against aiosmtplib on one reused connection.

The reference sends pre-built messages of the same size over one aiosmtplib connection to the
same server in the same run: what the SMTP server and the client library allow, no spool.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench import smtpserver
from bench.child import Child
from bench.harness import Bench
from bench.report import Check, Result, rate
from bench.scenarios.common import POST_BATCH, lost_count

EVENTS = (5_000, 200)


async def email(bench: Bench) -> Result:
    events = bench.sized(*EVENTS)
    server = Child("smtp", smtpserver.serve)
    smtp_port = await server.start()
    try:
        run_dir, config = bench.config("email", delivery="email", smtp_port=smtp_port)
        async with bench.daemon(run_dir, config) as daemon:
            cpu_before = daemon.cpu()
            post = await bench.load(
                "post",
                {
                    "url": daemon.base,
                    "count": events,
                    "batch": POST_BATCH,
                    "concurrency": 4,
                    "customers": 1000,
                    "prefix": "email",
                    "deadline": max(60.0, events / 100),
                },
            )
            expected = post["accepted"]
            stats = await _wait(server, expected, timeout=max(60.0, expected / 50))
            cpu = daemon.cpu() - cpu_before
            await daemon.settle(expected, timeout=60)
            peak = daemon.memory()[1]
        counts = daemon.counts()
        await server.call("reset")
        ref = await bench.load(
            "smtp_reference",
            {"port": smtp_port, "count": events, "deadline": max(60.0, events / 50)},
        )
        ref_stats = await _wait(server, ref["messages"], timeout=30)
    finally:
        server.stop()
    elapsed = (stats["last_at"] or post["ended"]) - post["started"]
    per_s = rate(stats["delivered"], elapsed)
    ref_per_s = rate(ref["messages"], ref["ended"] - ref["started"])
    ratio = per_s / ref_per_s if ref_per_s else 0.0
    figures: dict[str, Any] = {
        "events": events,
        "accepted": expected,
        "delivered": stats["delivered"],
        "messages_received": stats["messages"],
        "messages_per_s": round(per_s, 1),
        "cpu_s_per_1000": round(cpu / max(1, stats["delivered"]) * 1000, 3),
        "peak_rss_mb": round(peak, 1),
        "reference_messages": ref["messages"],
        "reference_delivered": ref_stats["delivered"],
        "reference_per_s": round(ref_per_s, 1),
        "reference_message_bytes": ref["message_bytes"],
        "ratio": round(ratio, 3),
        "spool": counts,
    }
    return Result(
        "email",
        f"{per_s:,.0f} messages/s; aiosmtplib on one connection {ref_per_s:,.0f}/s "
        f"(ratio {ratio:.2f})",
        figures,
        {**config.settings(), "pool_size": "default (4)", "server": "aiosmtpd"},
        events,
        lost_count(events, stats["delivered"], counts),
        [Check("ratio", ratio, 0.5, True)],
    )


async def _wait(server: Child, expected: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, Any] = await server.call("stats")
        if stats["delivered"] >= expected or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.1)
