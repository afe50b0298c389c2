"""`postbackd samples [TYPE]`: list the sample events, or print one as JSON.

A sample is a starting point for writing a template (``postbackd samples order.shipped >
event.json``) or for a test postback. Each printed sample has a fresh event id, so posting it
again and again makes a new event each time (the daemon stores an event id only once: a repeat
is answered as a duplicate and delivers nothing); ``--fixed-id`` keeps the id the sample ships
with, for output that must not change. It never reads the configuration, so it works before
there is any.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from postbackd.samples import UnknownSample, fresh_event_id, load_sample, sample_types


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "samples",
        help="list the sample events, or print one",
        description="Without TYPE, list the event types that have a sample (one per line); "
        "with TYPE (a type such as order.shipped or an alias such as 'Order shipped'), "
        "print that sample event as JSON, with a fresh event id (each run is a new event).",
    )
    parser.add_argument("type", nargs="?", metavar="TYPE", help="the event type to print")
    parser.add_argument(
        "--fixed-id",
        action="store_true",
        help="keep the sample's own event id (the same on every run: the daemon stores it "
        "once and answers a repeat as a duplicate)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.type is None:
        for name in sample_types():
            print(name)
        return 0
    try:
        sample = load_sample(args.type)
    except UnknownSample as exc:
        print(f"postbackd samples: {exc}", file=sys.stderr)
        return 1
    if not args.fixed_id:
        sample["id"] = fresh_event_id()
    print(json.dumps(sample, indent=2, ensure_ascii=False))
    return 0
