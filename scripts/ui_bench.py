"""Measure the Requests page on a big spool: generate one, then time the list queries.

    .venv/bin/python scripts/ui_bench.py generate /tmp/ui-1m/spool.db --rows 1000000
    .venv/bin/python scripts/ui_bench.py measure /tmp/ui-1m/spool.db

`generate` writes a realistic spool directly with SQLite (one transaction; ~1 min for a
million rows): 200 customers of very different sizes, 3 triggers each, the 8 event types,
mostly done with some dead, failed, pending, held and cancelled, over 30 days.
`measure` times each filter of the Requests page — the query through `postbackd.spool.sqlite.ui` and
the HTML through the UI's templates — and prints the median and worst of several runs.
Not a test: numbers depend on the machine, so nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import time
import uuid
from pathlib import Path

from postbackd.events import CANONICAL_TYPES
from postbackd.spool import DeliveryState, ListFilter, open_spool
from postbackd.spool.sqlite.browse import list_page
from postbackd.spool.sqlite.schema import open_reader

STATES = (
    ("done", 0.95),
    ("dead", 0.02),
    ("failed", 0.01),
    ("pending", 0.01),
    ("held", 0.005),
    ("cancelled", 0.005),
)


def generate(path: Path, rows: int, seed: int = 7) -> None:
    asyncio.run(_create(path))
    rng = random.Random(seed)
    customers = [f"customer-{i:03d}" for i in range(200)]
    weights = [1 / (i + 1) for i in range(len(customers))]
    states, state_weights = zip(*STATES, strict=True)
    start = time.time() - 30 * 86400
    step = 30 * 86400 / rows
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    batch_events, batch_deliveries, batch_attempts = [], [], []
    for seq in range(1, rows + 1):
        created = start + seq * step
        customer = rng.choices(customers, weights)[0]
        event_type = rng.choice(CANONICAL_TYPES)
        trigger = f"{customer}-{rng.randrange(3)}"
        state = rng.choices(states, state_weights)[0]
        order = f"order-{rng.randrange(rows // 4)}"
        event_id = str(uuid.UUID(int=rng.getrandbits(128)))
        body = json.dumps(
            {
                "orderId": order,
                "status": event_type.split(".")[1],
                "trackingCode": f"1Z{rng.getrandbits(40):X}",
                "items": [{"sku": f"SKU-{rng.randrange(999)}", "quantity": 1}],
            }
        )
        event = json.dumps(
            {"id": event_id, "type": event_type, "customer": customer, "data": json.loads(body)}
        )
        batch_events.append((event_id, event_type, customer, order, created, event))
        finished = created + 1 if state in ("done", "dead", "failed", "cancelled") else None
        status = {"done": 200, "dead": 500}.get(state)
        attempts = {"done": 1, "dead": 8}.get(state, 0)
        batch_deliveries.append(
            (
                str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event_id}{trigger}")),
                event_id,
                trigger,
                customer,
                event_type,
                order,
                body.encode(),
                state,
                attempts,
                created,
                created + 5,
                created + 1,
                finished,
                status,
                f"https://{customer}.example:443",
            )
        )
        if attempts:
            batch_attempts.append((batch_deliveries[-1][0], created + 1, status))
        if len(batch_deliveries) >= 20_000 or seq == rows:
            _flush(conn, batch_events, batch_deliveries, batch_attempts)
            batch_events, batch_deliveries, batch_attempts = [], [], []
    conn.execute("COMMIT")
    conn.close()


async def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    spool = await open_spool(path)
    await spool.close()


def _flush(conn: sqlite3.Connection, events: list, deliveries: list, attempts: list) -> None:
    conn.executemany(
        "INSERT INTO events (id, type, customer, order_id, event_time, received_at, source, "
        "matched, body) VALUES (?, ?, ?, ?, '2026-01-01T00:00:00Z', ?, 'http', 1, ?)",
        events,
    )
    conn.executemany(
        "INSERT INTO deliveries (id, event_id, trigger_name, plugin, customer, event_type, "
        "order_id, format, content_type, body, state, attempts, ordered, created_at, "
        "next_attempt_at, updated_at, finished_at, last_status, destination) VALUES "
        "(?, ?, ?, 'webhook', ?, ?, ?, 'json', 'application/json', ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
        deliveries,
    )
    conn.executemany(
        "INSERT INTO attempts (delivery_id, number, started_at, duration, outcome, status) "
        "VALUES (?, 1, ?, 0.05, 'ok', ?)",
        attempts,
    )


def measure(path: Path, runs: int = 9) -> None:
    from postbackd.ui.requests_pages import render_request_rows

    conn = open_reader(path)
    total = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    newest = conn.execute("SELECT max(created_at) FROM deliveries").fetchone()[0]
    big, small = "customer-000", "customer-150"
    order = conn.execute(
        "SELECT order_id FROM deliveries WHERE customer = ? LIMIT 1", (small,)
    ).fetchone()[0]
    cases = {
        "no filter": ListFilter(),
        "customer (largest)": ListFilter(customer=big),
        "customer (small)": ListFilter(customer=small),
        "trigger": ListFilter(trigger=f"{small}-1"),
        "event type": ListFilter(event_type="order.returned"),
        "state dead": ListFilter(state=DeliveryState.DEAD),
        "state held": ListFilter(state=DeliveryState.HELD),
        "order id": ListFilter(order=order),
        "last hour": ListFilter(since=newest - 3600),
        "a day 20 days ago": ListFilter(since=newest - 20 * 86400, until=newest - 19 * 86400),
        "small customer + dead": ListFilter(customer=small, state=DeliveryState.DEAD),
        "largest customer + held + type": ListFilter(
            customer=big,
            state=DeliveryState.HELD,
            event_type="order.shipped",
        ),
        "small customer, a day 20 days ago": ListFilter(
            customer=small, since=newest - 20 * 86400, until=newest - 19 * 86400
        ),
    }
    print(f"{path}: {total} deliveries; 50 rows per page, {runs} runs each (ms)")
    print(f"{'filter':38} {'query med':>9} {'query max':>9} {'html med':>9} {'rows':>5}")
    for name, filters in cases.items():
        query_times, html_times = [], []
        for _ in range(runs):
            started = time.perf_counter()
            page, _cursor = list_page(conn, filters, 50, None)
            query_times.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            render_request_rows(page)
            html_times.append((time.perf_counter() - started) * 1000)
        print(
            f"{name:38} {statistics.median(query_times):9.2f} {max(query_times):9.2f} "
            f"{statistics.median(html_times):9.2f} {len(page):5}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("path", type=Path)
    gen.add_argument("--rows", type=int, default=1_000_000)
    meas = sub.add_parser("measure")
    meas.add_argument("path", type=Path)
    args = parser.parse_args()
    if args.command == "generate":
        generate(args.path, args.rows)
    else:
        measure(args.path)


if __name__ == "__main__":
    main()
