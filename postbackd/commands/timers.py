"""Pending ``[[sla]]`` timers in a terminal: `postbackd queue timers` and `requests timers`.

One aligned line per timer — the rule, the order, when it is due (or how late it is, when a
stopped daemon has not fired it yet), the event that started it — or, with ``--json``, every
field as JSON lines for jq. ``--state fired|cancelled|all`` shows how timers ended instead.
"""

from __future__ import annotations

import argparse
import time
from typing import cast

from postbackd.commands.spool_access import print_json_line, short_duration
from postbackd.spool import SlaTimer, Spool, TimerState
from postbackd.units import plural

TIMER_STATES = ("pending", "fired", "cancelled", "all")
SHORT_ID = 8


def add_timer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        choices=TIMER_STATES,
        default="pending",
        help="which timers (default: pending; fired and cancelled newest first)",
    )
    parser.add_argument("--limit", type=int, default=100, metavar="N", help="at most N timers")
    parser.add_argument("--json", action="store_true", help="one JSON object a line")


async def list_timers(spool: Spool, args: argparse.Namespace) -> int:
    if args.limit < 1:
        print("postbackd: --limit must be at least 1")
        return 2
    state = None if args.state == "all" else cast(TimerState, args.state)
    timers = await spool.list_timers(state, args.limit)
    if args.json:
        for timer in timers:
            print_json_line(timer.as_json())
        return 0
    if not timers:
        print(f"no {'' if state is None else state + ' '}delay timers")
        return 0
    now = time.time()
    rows: list[tuple[str, ...]] = [
        ("TIMER", "STATE", "RULE", "CUSTOMER", "ORDER", "DUE", "STARTED BY / NOTE")
    ]
    rows += [_row(timer, now) for timer in timers]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]))
    print(plural(len(timers), "timer"))
    return 0


def _row(timer: SlaTimer, now: float) -> tuple[str, ...]:
    if timer.state == "pending":
        left = timer.due_at - now
        due = f"in {short_duration(left)}" if left >= 0 else f"{short_duration(-left)} late"
        about = f"{timer.started_by}"
    else:
        due = "-"
        about = timer.note or ""
    return (
        timer.id[:SHORT_ID],
        timer.state,
        timer.rule,
        timer.customer,
        timer.order_id,
        due,
        about,
    )
