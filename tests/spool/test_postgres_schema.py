"""The PostgreSQL spool's versioned schema on a real server: a version-1 database (before node
heartbeats) migrates to the current version with its rows kept, nodes opening it together
migrate it once, and a newer database is refused with a message."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from postbackd.spool import SpoolError, open_spool
from postbackd.spool.postgres.schema import MIGRATIONS, SCHEMA_VERSION
from tests.pg_fixtures import pg_cluster, pg_url
from tests.spool.helpers import S, add, new_delivery, state_of

__all__ = ["pg_cluster", "pg_url"]


async def version_1(url: str) -> None:
    """The database as postbackd with schema version 1 left it."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE postbackd_schema (version integer NOT NULL)")
        for statement in MIGRATIONS[1]:
            await conn.execute(statement)
        await conn.execute("INSERT INTO postbackd_schema (version) VALUES (1)")
    finally:
        await conn.close()


async def test_a_version_1_database_migrates_with_its_rows(pg_url: str) -> None:
    await version_1(pg_url)
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "INSERT INTO events (id, type, customer, event_time, received_at, source, matched, "
            "body) VALUES ('e1', 'order.shipped', 'acme', 't', 0, 'test', true, '{}')"
        )
        await conn.execute(
            "INSERT INTO deliveries (id, event_id, trigger_name, plugin, customer, event_type, "
            "format, content_type, body, state, ordered, created_at, next_attempt_at, "
            "updated_at) VALUES ('d1', 'e1', 't1', 'webhook', 'acme', 'order.shipped', 'json', "
            "'application/json', '{}', 'pending', false, 0, 0, 0)"
        )
    finally:
        await conn.close()
    nodes = await asyncio.gather(
        *(open_spool(pg_url, exclusive=True, node=f"n{i}") for i in range(3))
    )  # three nodes starting together
    try:
        assert await state_of(nodes[0], "d1") is S.PENDING
        assert await nodes[1].live_nodes() == []  # the heartbeat table is there, empty
        await add(nodes[2], "e2", new_delivery("d2", order="o2"), order="o2")
    finally:
        for node in nodes:
            await node.close()
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetch("SELECT version FROM postbackd_schema") == [(SCHEMA_VERSION,)]
    finally:
        await conn.close()


async def test_a_newer_database_is_refused(pg_url: str) -> None:
    spool = await open_spool(pg_url)  # created at the current version
    await spool.close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("UPDATE postbackd_schema SET version = $1", SCHEMA_VERSION + 1)
    finally:
        await conn.close()
    with pytest.raises(SpoolError, match=f"schema version {SCHEMA_VERSION + 1} but this"):
        await open_spool(pg_url)
