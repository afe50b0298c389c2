"""`postbackd erase --order ID`: remove one order's personal data from the spool and its log.

Events, rendered payloads and the request log of the order go, their freed pages overwritten
(`Spool.erase_order`); pending deliveries of the order go with them, so nothing more is sent
for it. Then the write-ahead log is checkpointed into the database and truncated: the old page
versions in ``spool.db-wal`` are copies of the order too. When the command returns 0 no spool
file holds the order's data.

Works beside the running daemon: SQLite lets this process write and checkpoint while the daemon
has the spool open (the checkpoint waits for the daemon's writes and reads in flight). What it
cannot reach is the daemon's memory: an attempt already in flight for the order finishes, and
its outcome is dropped because the delivery is gone. If the log stays in use (a reader on an
old snapshot), the command says so and exits 1: run it again, or with the daemon stopped.
Asks first on a terminal; without one, wants --yes.
"""

from __future__ import annotations

import argparse
import sys

from postbackd.commands.spool_access import (
    ListQuery,
    add_spool_options,
    ask,
    iter_deliveries,
    require_consent,
    run_on_spool,
)
from postbackd.spool import Spool
from postbackd.units import plural


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "erase",
        help="remove an order's events, payloads and request log (personal data)",
        description="Remove every event, delivery and request log entry of one order from the "
        "spool, overwriting the freed space. Pending deliveries of the order are not sent.",
    )
    parser.add_argument("--order", required=True, metavar="ID", help="the order id to erase")
    parser.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    add_spool_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.order.strip():
        print("postbackd erase: --order must not be empty", file=sys.stderr)
        return 2
    return run_on_spool(args, lambda spool: erase(spool, args.order, yes=args.yes))


async def erase(spool: Spool, order_id: str, *, yes: bool) -> int:
    require_consent(yes=yes, stdin_used=False, refusal=f"not erasing order {order_id}")
    if not yes:
        deliveries = [d async for d in iter_deliveries(spool, ListQuery(order=order_id))]
        if deliveries:
            count = plural(len(deliveries), "delivery", "deliveries")
            ask(f"Erase order {order_id}: its events, {count} and their request log?")
    erased = await spool.verbs.erase_order(order_id)
    print(
        f"erased order {order_id}: {plural(erased.events, 'event')}, "
        f"{plural(erased.deliveries, 'delivery', 'deliveries')}, "
        f"{plural(erased.attempts, 'request log entry', 'request log entries')}"
    )
    return 0
