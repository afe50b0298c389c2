"""fleet: steady throughput of one SQLite node, one PostgreSQL node, two PostgreSQL nodes on
one database, and one PostgreSQL node with ``workers = 2`` (issue 16: a delivery worker
process beside it), in the same run (issue 15's targets: PostgreSQL ≥ 0.7 × SQLite, two nodes ≥
1.3 × one node; nothing lost; no delivery made twice while both nodes live).

The same burst as steady (batches of 100 over HTTP, 1,000 customers, one receiver); with two
nodes the load generator's batches take turns between them, so each accepts half and either
delivers any. The PostgreSQL server is the one of ``scripts/postgres.sh`` (its URL in
``$POSTGRES_TEST_DIR/url``) or ``POSTBACKD_BENCH_PG``; each run gets a fresh database, dropped
after. Where the time goes is read from /proc: each daemon's event-loop thread and other
threads, the PostgreSQL server (postmaster and backends), the receiver and load generator.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.daemonproc import BenchDaemon
from bench.harness import Bench
from bench.procfs import family_cpu_seconds
from bench.report import Check, Result, percentile, rate
from bench.scenarios.common import POST_BATCH, POST_CONCURRENCY, lost_count, thread_split

FLEET_EVENTS = (20_000, 600)  # (full, --quick) per run; three runs
PG_OVER_SQLITE, TWO_OVER_ONE = 0.7, 1.3


def pg_server_url() -> str:
    """The PostgreSQL server the fleet runs on (its maintenance database's URL)."""
    if os.environ.get("POSTBACKD_BENCH_PG"):
        return os.environ["POSTBACKD_BENCH_PG"]
    url_file = Path(os.environ.get("POSTGRES_TEST_DIR", "/tmp/postbackd-postgres")) / "url"
    if url_file.is_file():
        return url_file.read_text().strip()
    raise RuntimeError(
        f"no PostgreSQL for the fleet scenario: run scripts/postgres.sh start ({url_file} holds "
        "its URL then) or set POSTBACKD_BENCH_PG=postgresql://…"
    )


def postmaster_pid() -> int | None:
    """The local test cluster's server process, to measure its CPU; None if not ours."""
    pid_file = Path(os.environ.get("POSTGRES_TEST_DIR", "/tmp/postbackd-postgres"))
    pid_file = pid_file / "data" / "postmaster.pid"
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@asynccontextmanager
async def fresh_database(server: str) -> AsyncIterator[str]:
    import asyncpg

    name = f"postbackd_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def run_nodes(
    bench: Bench, name: str, spool: str | None, nodes: int, workers: int = 1
) -> dict[str, Any]:
    """Start `nodes` daemons on `spool` (None: each its own SQLite file), each with `workers`
    processes, post one burst split between them, and measure it."""
    events = bench.sized(*FLEET_EVENTS)
    await bench.rx("reset", 0)
    async with AsyncExitStack() as stack:
        daemons: list[BenchDaemon] = []
        settings: dict[str, Any] = {}
        for index in range(nodes):
            overrides: dict[str, Any] = {} if spool is None else {"spool": spool}
            if spool is not None:
                overrides["node"] = f"bench-{index + 1}"
                overrides["workers"] = workers
            run_dir, config = bench.config(f"{name}-{index + 1}", **overrides)
            settings = config.settings()
            daemons.append(await stack.enter_async_context(bench.daemon(run_dir, config)))
        figures = await measure(bench, daemons, events, prefix=name)
        figures["spool"] = daemons[0].counts()
        if spool is not None:
            figures["attempts_by_node"] = daemons[0].attempts_by_node()
    figures["settings"] = {**settings, "nodes": nodes}
    return figures


async def measure(
    bench: Bench, daemons: list[BenchDaemon], events: int, *, prefix: str
) -> dict[str, Any]:
    postmaster = postmaster_pid()
    cpu_before = [d.cpu() for d in daemons]
    threads_before = [d.thread_cpu() for d in daemons]
    pg_before = family_cpu_seconds(postmaster) if postmaster else 0.0
    helpers_before = bench.helper_cpu()
    post = await bench.load(
        "post",
        {
            "url": daemons[0].base,
            "urls": [d.base for d in daemons],
            "count": events,
            "batch": POST_BATCH,
            "concurrency": POST_CONCURRENCY * len(daemons),
            "customers": 1000,
            "prefix": prefix,
            "deadline": max(60.0, events / 100),
        },
    )
    expected = post["accepted"]
    stats = await bench.wait_delivered(expected, timeout=max(60.0, expected / 100))
    delivered = max(1, stats["delivered"])
    per_node = []
    for daemon, before, threads in zip(daemons, cpu_before, threads_before, strict=True):
        main, other = thread_split(daemon.pid, threads, daemon.thread_cpu())
        per_node.append(
            {
                "cpu_s_per_1000": round((daemon.cpu() - before) / delivered * 1000, 3),
                "main_thread_cpu_s_per_1000": round(main / delivered * 1000, 3),
                "other_threads_cpu_s_per_1000": round(other / delivered * 1000, 3),
                "peak_rss_mb": round(daemon.memory()[1], 1),
            }
        )
    pg_cpu = family_cpu_seconds(postmaster) - pg_before if postmaster else None
    helpers = {name: used - helpers_before[name] for name, used in bench.helper_cpu().items()}
    await daemons[0].settle(expected, timeout=60)
    latencies = await bench.rx("latencies", timeout=60)
    elapsed = (stats["last_at"] or post["ended"]) - post["started"]
    return {
        "events": events,
        "accepted": expected,
        "refused": post["refused"] + post["errors"],
        "refusals": post["refusals"],
        "delivered": stats["delivered"],
        "duplicates": stats["duplicates"],
        "requests": stats["requests"],
        "accepted_per_s": round(rate(expected, post["ended"] - post["started"]), 1),
        "delivery_seconds": round(elapsed, 3),
        "deliveries_per_s": round(rate(stats["delivered"], elapsed), 1),
        "latency_p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "nodes": per_node,
        "postgres_cpu_s_per_1000": None if pg_cpu is None else round(pg_cpu / delivered * 1000, 3),
        "receiver_cpu_s_per_1000": round(helpers["receiver"] / delivered * 1000, 3),
        "loadgen_cpu_s_per_1000": round(helpers["loadgen"] / max(1, events) * 1000, 3),
    }


async def fleet(bench: Bench) -> Result:
    server = pg_server_url()
    sqlite = await run_nodes(bench, "fleet-sqlite", None, 1)
    async with fresh_database(server) as url:
        pg_one = await run_nodes(bench, "fleet-pg1", url, 1)
    async with fresh_database(server) as url:
        pg_two = await run_nodes(bench, "fleet-pg2", url, 2)
    async with fresh_database(server) as url:
        pg_workers = await run_nodes(bench, "fleet-pg1w2", url, 1, workers=2)
    runs = {
        "sqlite_one_node": sqlite,
        "postgres_one_node": pg_one,
        "postgres_two_nodes": pg_two,
        "postgres_one_node_two_workers": pg_workers,
    }
    s, p1, p2, pw = (r["deliveries_per_s"] for r in runs.values())
    pg_ratio = p1 / s if s else 0.0
    scale = p2 / p1 if p1 else 0.0
    duplicates = sum(r["duplicates"] for r in runs.values())
    lost = sum(
        lost_count(r["accepted"], r["delivered"], r["spool"]) + r["refused"] for r in runs.values()
    )
    figures = {
        **runs,
        "postgres_over_sqlite": round(pg_ratio, 3),
        "two_over_one": round(scale, 3),
        "two_workers_over_one": round(pw / p1 if p1 else 0.0, 3),
    }
    return Result(
        "fleet",
        f"SQLite {s:,.0f}/s, PostgreSQL {p1:,.0f}/s, two PostgreSQL nodes {p2:,.0f}/s, "
        f"one with workers = 2 {pw:,.0f}/s; "
        f"{duplicates} delivered twice",
        figures,
        {name: r.pop("settings") for name, r in runs.items()},
        sum(r["events"] for r in runs.values()),
        lost,
        [
            Check("PostgreSQL/SQLite", pg_ratio, PG_OVER_SQLITE, True),
            Check("two/one node", scale, TWO_OVER_ONE, True),
            Check("delivered twice", duplicates, 0, False),
        ],
    )
