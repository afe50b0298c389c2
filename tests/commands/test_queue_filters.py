"""`queue hold|release|retry|resend` by the request log's filters, as real subprocesses on a
spool of either backend (a file, or a PostgreSQL URL), with --dry-run counting first."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from postbackd.spool import open_spool
from postbackd.spool.model import DeliveryState
from tests.spool.helpers import add, new_delivery, state_of

S = DeliveryState


def queue(target: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postbackd", "queue", *args, "--spool", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_hold_and_release_by_trigger_with_a_dry_run(spool_target: Path | str) -> None:
    spool = await open_spool(spool_target)
    try:
        await add(spool, "e1", new_delivery("p1", trigger="t1", order="o1"), order="o1")
        await add(spool, "e2", new_delivery("p2", trigger="t2", order="o2"), order="o2")
    finally:
        await spool.close()

    counted = await asyncio.to_thread(queue, spool_target, "hold", "--trigger", "t2", "--dry-run")
    assert counted.stdout.strip() == "would hold 1 delivery (dry run: nothing changed)"
    held = await asyncio.to_thread(queue, spool_target, "hold", "--trigger", "t2", "--since", "1h")
    assert (held.returncode, held.stdout.strip()) == (0, "held 1 delivery"), held.stderr
    later = await asyncio.to_thread(queue, spool_target, "release", "--until", "1h")
    assert later.stdout.strip() == "released 0 deliveries"  # created within the hour
    released = await asyncio.to_thread(queue, spool_target, "release", "--order", "o2")
    assert released.stdout.strip() == "released 1 delivery", released.stderr
    nothing = await asyncio.to_thread(queue, spool_target, "hold")
    assert nothing.returncode == 2 and "--trigger T" in nothing.stderr

    spool = await open_spool(spool_target)
    try:
        assert (await state_of(spool, "p1"), await state_of(spool, "p2")) == (S.PENDING, S.PENDING)
    finally:
        await spool.close()
