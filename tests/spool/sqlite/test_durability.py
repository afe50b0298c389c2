"""The spool across processes: kill -9 while deliveries are in flight, ownership, and a large
backlog claimed in bounded batches."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

import postbackd.spool.sqlite.checkpoint as spool_checkpoint
import postbackd.spool.sqlite.lock as spool_lock
from postbackd.spool import open_spool
from postbackd.spool.model import DeliveryState, SpoolError
from tests.paths import REPO
from tests.spool.helpers import make_event, new_delivery, result

S = DeliveryState

CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from postbackd.spool import Spool, open_spool
    from tests.spool.helpers import make_event, new_delivery

    async def main():
        spool = await open_spool(Path(sys.argv[1]), exclusive=True)
        deliveries = [new_delivery(f"d{i}", trigger=f"t{i}") for i in range(3)]
        await spool.submit(make_event("e1"), deliveries, source="test")
        await spool.submit(make_event("e2", order="o2"), [new_delivery("later", order="o2",
                           next_attempt_at=time.time() + 3600)], source="test")
        claimed = await spool.claim_due(time.time() + 1, 10)
        print(len(claimed), flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
    """
)


async def start_child(path: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )


async def test_kill_9_with_deliveries_in_flight_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    child = await start_child(path)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 20)
        assert line.strip() == b"3"

        # While the owner lives, another opener (the CLI) leaves its work alone.
        async with await open_spool(path) as cli:
            assert not cli.owner
            assert (await cli.stats()).by_state["inflight"] == 3
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    before = time.time()
    async with await open_spool(path, exclusive=True) as spool:
        assert spool.owner
        stats = await spool.stats()
        assert stats.by_state["inflight"] == 0
        assert stats.by_state["pending"] == 4
        assert stats.events == 2
        claimed = await spool.claim_due(time.time() + 1, 10)
        assert sorted(d.id for d in claimed) == ["d0", "d1", "d2"]
        assert all(d.next_attempt_at >= before for d in claimed)  # due again at recovery
        assert claimed[0].body == b'{"status":"shipped"}'


async def test_a_second_daemon_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_lock, "OWNER_WAIT", 0.2)
    path = tmp_path / "spool.db"
    async with await open_spool(path, exclusive=True):
        with pytest.raises(SpoolError, match=f"in use by another postbackd \\(pid {os.getpid()}"):
            await open_spool(path, exclusive=True)
    async with await open_spool(path, exclusive=True) as again:
        assert again.owner


async def test_non_owner_open_does_not_recover_inflight(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    async with await open_spool(path) as daemon:
        await daemon.submit(make_event("e1"), [new_delivery("d1")], source="test")
        await daemon.claim_due(time.time() + 1, 10)
        async with await open_spool(path) as cli:
            assert not cli.owner
            assert await cli.verbs.retry(["d1"]) == 0  # inflight belongs to the daemon
            assert await cli.verbs.hold(["d1"]) == 0
        assert (await daemon.stats()).by_state["inflight"] == 1


async def test_cli_and_daemon_write_the_same_spool(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    async with await open_spool(path) as daemon, await open_spool(path) as cli:
        for index in range(20):
            await daemon.submit(
                make_event(f"e{index}", order=f"o{index}"),
                [new_delivery(f"d{index}", order=f"o{index}")],
                source="test",
            )
        writes = [cli.verbs.hold([f"d{index}"]) for index in range(0, 20, 2)]
        claims = [daemon.claim_due(time.time() + 1, 1) for _ in range(10)]
        await asyncio.gather(*writes, *claims)
        stats = await daemon.stats()
        assert stats.by_state["held"] + stats.by_state["inflight"] + stats.by_state["pending"] == 20
        assert stats.by_state["inflight"] == 10


async def test_claim_due_with_a_large_backlog_returns_only_limit(tmp_path: Path) -> None:
    async with await open_spool(tmp_path / "spool.db", synchronous="NORMAL") as spool:
        start = time.time() - 1000
        submits = []
        for batch in range(100):
            deliveries = [
                new_delivery(
                    f"d{batch}-{index}",
                    order=f"o{batch}-{index}",
                    next_attempt_at=start + batch * 200 + index,
                )
                for index in range(200)
            ]
            submits.append(
                spool.submit(make_event(f"e{batch}", order=None), deliveries, source="test")
            )
        await asyncio.gather(*submits)
        assert (await spool.stats()).by_state["pending"] == 20_000

        claimed = await spool.claim_due(time.time(), 50)
        assert [d.id for d in claimed] == [f"d0-{index}" for index in range(50)]
        stats = await spool.stats()
        assert (stats.by_state["inflight"], stats.by_state["pending"]) == (50, 19_950)


async def test_with_full_only_commits_holding_an_event_wait_for_an_fsync(tmp_path: Path) -> None:
    """Claims and outcomes ride on the next event commit's fsync (a power cut may only undo
    an attempt's record, so the delivery goes again); an accepted event is synced at once."""
    async with await open_spool(tmp_path / "spool.db", synchronous="FULL") as spool:
        writer = spool._writer
        opened = writer.commits
        await spool.submit(make_event("e1"), [new_delivery("d1")], source="test")
        assert (writer.commits - opened, writer.relaxed_commits) == (1, 0)
        [claimed] = await spool.claim_due(time.time() + 1, 10)
        await spool.record_attempt(result(claimed.id, DeliveryState.DONE))
        assert (writer.commits - opened, writer.relaxed_commits) == (3, 2)
        await spool.submit(make_event("e2"), [new_delivery("d2")], source="test")
        assert (writer.commits - opened, writer.relaxed_commits) == (4, 2)
    async with await open_spool(tmp_path / "spool.db", synchronous="NORMAL") as spool:
        await spool.claim_due(time.time() + 1, 10)
        assert spool._writer.relaxed_commits == 0  # NORMAL never fsyncs a commit anyway
        detail = await spool.get_delivery("d1")
        assert detail is not None and detail.summary.state is DeliveryState.DONE


async def test_the_daemons_spool_checkpoints_on_its_own_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_checkpoint, "INTERVAL", 0.05)
    async with await open_spool(tmp_path / "spool.db", exclusive=True) as spool:
        checkpointer = spool._checkpointer
        assert checkpointer is not None
        for n in range(20):
            await spool.submit(make_event(f"e{n}"), [new_delivery(f"d{n}")], source="test")
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert checkpointer.checkpoints >= 3
        autocheckpoint = await spool._writer.call(
            lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        )
        assert autocheckpoint == spool_checkpoint.WRITER_AUTOCHECKPOINT
    # a CLI command's short-lived open leaves checkpoints to SQLite's own
    async with await open_spool(tmp_path / "spool.db") as cli:
        assert cli._checkpointer is None
        assert (await cli.stats()).events == 20
