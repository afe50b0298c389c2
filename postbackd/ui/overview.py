"""The overview: throughput and success rate, queue depth, open breakers, configuration state."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from postbackd.fleet import fleet_status
from postbackd.spool import Throughput
from postbackd.ui.visit import UiBackend, Visit

CHART_MINUTES = 60
CHART_HEIGHT = 120
BAR_WIDTH = 10


@dataclass(frozen=True)
class Bar:
    """One minute of the chart, as SVG geometry (no inline style: the CSP forbids it)."""

    x: int
    done_y: float
    done_height: float
    failed_y: float
    failed_height: float
    label: str


def chart(throughput: Throughput) -> list[Bar]:
    peak = max((m.done + m.failed for m in throughput.minutes), default=0) or 1
    bars = []
    for index, minute in enumerate(throughput.minutes):
        done_h = CHART_HEIGHT * minute.done / peak
        failed_h = CHART_HEIGHT * minute.failed / peak
        stamp = time.strftime("%H:%M", time.gmtime(minute.start))
        bars.append(
            Bar(
                x=index * BAR_WIDTH,
                done_y=CHART_HEIGHT - done_h,
                done_height=done_h,
                failed_y=CHART_HEIGHT - done_h - failed_h,
                failed_height=failed_h,
                label=f"{stamp} UTC: {minute.done} done, {minute.failed} dead or failed",
            )
        )
    return bars


class Overview:
    def __init__(self, backend: UiBackend) -> None:
        self.backend = backend

    async def page(self, visit: Visit) -> web.Response:
        now = time.time()
        stats = await self.backend.spool.stats()
        throughput = await self.backend.spool.throughput(CHART_MINUTES, now)
        breakers = sorted(self.backend.breakers.open_destinations().items())
        status = self.backend.config_status()
        fleet = await fleet_status(self.backend.spool)
        recent = throughput.minutes[-5:]
        per_minute = sum(m.done + m.failed for m in recent) / max(len(recent), 1)
        return visit.page(
            "overview.html",
            now=now,
            stats=stats,
            throughput=throughput,
            per_minute=per_minute,
            bars=chart(throughput),
            chart_width=CHART_MINUTES * BAR_WIDTH,
            chart_height=CHART_HEIGHT,
            bar_width=BAR_WIDTH - 2,
            breakers=breakers,
            config_status=status,
            fleet=fleet,
        )
