"""The fleet's heartbeats: which nodes are live, what configuration each runs, what they know.

Each daemon node upserts its row (`NodeBeat`) at start, at every reload and every
`HEARTBEAT_EVERY` seconds; it is live while `live_until` — the database's clock at the beat plus
`LIVE_FOR` — has not passed, and a node that stops cleanly deletes its row. What the live nodes
know decides what skew may not touch: a delivery whose trigger some live node has is left to it,
never cancelled (`sync_triggers` in `writes`, `known_elsewhere` for an attempt).
"""

from __future__ import annotations

import math

import asyncpg

from postbackd.spool.model import LIVE_FOR, NodeBeat
from postbackd.spool.postgres.schema import DB_NOW


async def beat(conn: asyncpg.Connection, node: NodeBeat) -> None:
    """Record `node` as live now, with the configuration it runs."""
    await conn.execute(
        "INSERT INTO nodes (node, generation, fingerprint, started_at, last_seen, live_until, "
        f"triggers, active_triggers) VALUES ($1, $2, $3, $4, {DB_NOW}, {DB_NOW} + $5, $6, $7) "
        "ON CONFLICT (node) DO UPDATE SET generation = excluded.generation, "
        "fingerprint = excluded.fingerprint, started_at = excluded.started_at, "
        "last_seen = excluded.last_seen, live_until = excluded.live_until, "
        "triggers = excluded.triggers, active_triggers = excluded.active_triggers",
        node.node,
        node.generation,
        node.fingerprint,
        node.started_at,
        LIVE_FOR,
        list(node.triggers),
        list(node.active_triggers),
    )


async def leave(conn: asyncpg.Connection, node: str) -> None:
    """A node stopping cleanly is not live any more: the others need not wait for it to age."""
    await conn.execute("DELETE FROM nodes WHERE node = $1", node)


async def live(conn: asyncpg.Connection) -> list[NodeBeat]:
    """The live nodes, by name."""
    rows = await conn.fetch(
        "SELECT node, generation, fingerprint, started_at, last_seen, triggers, active_triggers "
        f"FROM nodes WHERE live_until > {DB_NOW} ORDER BY node"
    )
    return [
        NodeBeat(
            node=row["node"],
            generation=row["generation"],
            fingerprint=row["fingerprint"],
            started_at=_finite(row["started_at"]),
            triggers=tuple(row["triggers"]),
            active_triggers=tuple(row["active_triggers"]),
            last_seen=_finite(row["last_seen"]),
        )
        for row in rows
    ]


async def others_triggers(conn: asyncpg.Connection, node: str) -> tuple[set[str], set[str]]:
    """The triggers the other live nodes know, and those of them they deliver."""
    rows = await conn.fetch(
        f"SELECT triggers, active_triggers FROM nodes WHERE node <> $1 AND live_until > {DB_NOW}",
        node,
    )
    known: set[str] = set()
    active: set[str] = set()
    for row in rows:
        known.update(row["triggers"])
        active.update(row["active_triggers"])
    return known, active


async def known_elsewhere(conn: asyncpg.Connection, node: str, trigger: str) -> bool:
    """Whether another live node delivers `trigger`."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM nodes WHERE node <> $1 AND $2 = ANY(active_triggers) "
        f"AND live_until > {DB_NOW})",
        node,
        trigger,
    )
    return found


def _finite(epoch: float) -> float:
    """A time as JSON can carry it: a row some other writer left NaN or infinite reads as 0."""
    return epoch if math.isfinite(epoch) else 0.0
