"""`postbackd spool copy SRC DST`: move a stopped daemon's spool to another backend.

E.g. a SQLite file into PostgreSQL, when one server becomes a fleet (DESIGN §10), or back.
Each of SRC and DST is a spool file path or a ``postgresql://`` URL. The source file must not
be in use (stop its daemon first); the target must be empty (a new file or an empty database).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from postbackd.commands.spool_access import spool_target
from postbackd.plugin import SpoolUnavailable
from postbackd.spool import SpoolError
from postbackd.spool.copy import copy_spool


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "spool",
        help="spool maintenance: copy a spool to another backend",
        description="Spool maintenance.",
    )
    verbs = parser.add_subparsers(dest="spool_command", metavar="COMMAND", required=True)
    copy = verbs.add_parser(
        "copy",
        help="copy a stopped daemon's spool into an empty one (SQLite <-> PostgreSQL)",
        description="Copy every event, delivery (state and schedule included) and request log "
        "entry of SRC into DST, in one transaction. SRC's daemon must be stopped; DST must be "
        "empty. Each is a spool file path or a postgresql:// URL.",
    )
    copy.add_argument("source", type=spool_target, metavar="SRC", help="the spool to copy")
    copy.add_argument("target", type=spool_target, metavar="DST", help="an empty spool")
    copy.set_defaults(func=run_copy)


def run_copy(args: argparse.Namespace) -> int:
    try:
        counts = asyncio.run(copy_spool(args.source, args.target))
    except (SpoolError, SpoolUnavailable) as exc:
        print(f"postbackd spool copy: {exc}", file=sys.stderr)
        return 1
    print(
        f"copied {counts.events} events, {counts.deliveries} deliveries and "
        f"{counts.attempts} request log entries"
    )
    return 0
