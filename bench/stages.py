"""Where a run's post → receipt time went, delivery by delivery, from the spool it left behind.

    python bench/run.py --scenario latency --keep      # prints the work folder it kept
    python bench/stages.py /tmp/postbackd-bench-…/01-latency/spool.db

Every body the benchmark sends carries ``postedAt`` (the load generator's clock, the same
machine's); the spool holds when the writer committed the event and its delivery
(``created_at``) and when the attempt began and how long it took. So each delivery splits
into: posted → committed (HTTP, decoding, routing, the wait for the writer), committed →
attempt (the commit's fsync, the dispatcher's wake-up and claim, a free slot), and the attempt
itself. Printed: the percentiles of each stage, which stage was the largest in the slowest
1 %, and the tenths of a second of the run where the slowest deliveries were posted — a
tail spread evenly is per-delivery work, one gathered in bursts is a stall.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections import Counter
from pathlib import Path

STAGES = ("posted -> committed", "committed -> attempt", "attempt")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("spool", type=Path, help="spool.db of a kept benchmark run")
    args = parser.parse_args()
    conn = sqlite3.connect(f"file:{args.spool}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT d.body, d.created_at, a.started_at, a.duration FROM deliveries d "
        "JOIN attempts a ON a.delivery_id = d.id AND a.number = 1"
    ).fetchall()
    if not rows:
        raise SystemExit(f"{args.spool}: no attempted deliveries")
    split = []  # (posted, stage seconds…, total)
    for body, created, started, duration in rows:
        posted = float(json.loads(body)["postedAt"])
        split.append((posted, created - posted, started - created, duration))
    totals = [sum(parts[1:]) for parts in split]
    print(f"{len(split):,} deliveries")
    for index, name in enumerate((*STAGES, "total"), start=1):
        values = [s[index] for s in split] if index <= len(STAGES) else totals
        ms = [v * 1000 for v in values]
        print(
            f"{name:22} p50 {percentile(ms, 0.5):6.1f}  p90 {percentile(ms, 0.9):6.1f}  "
            f"p99 {percentile(ms, 0.99):6.1f}  max {max(ms):6.1f} ms"
        )
    ranked = sorted(zip(totals, split, strict=True), key=lambda pair: pair[0])
    slowest = [parts for _, parts in ranked[-max(1, len(ranked) // 100) :]]
    largest = Counter(STAGES[max(range(3), key=lambda i: parts[i + 1])] for parts in slowest)
    print("slowest 1 %, largest stage:", dict(largest.most_common()))
    start = min(parts[0] for parts in split)
    tenths = Counter(round(parts[0] - start, 1) for parts in slowest)
    print("slowest 1 %, posted at (s into the run: count):", dict(sorted(tenths.items())))


if __name__ == "__main__":
    main()
