"""The dispatcher's reading loop against a real spool, with a stand-in for the attempts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from postbackd import dispatcher as dispatcher_module
from postbackd.breaker import BreakerBoard
from postbackd.dispatcher import BUFFER_FACTOR, Dispatcher
from postbackd.spool import Spool, open_spool
from postbackd.spool.model import DeliveryState, StoredDelivery
from tests.spool.helpers import make_event, new_delivery, result

DESTINATION = "https://hooks.example:443"


class RecordingRunner:
    """Attempts wait for `gate` (a receiver that hangs, then recovers), then are done."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.attempted: list[str] = []
        self.recording: list[asyncio.Future[bool]] = []
        self.gate = asyncio.Event()

    def destination_for(self, generation: Any, delivery: StoredDelivery) -> str:
        return DESTINATION

    async def attempt(self, generation: Any, delivery: StoredDelivery, dest: str) -> None:
        await self.gate.wait()
        self.attempted.append(delivery.id)
        self.recording.append(self.spool.record_attempt(result(delivery.id, DeliveryState.DONE)))

    async def settle(self) -> None:
        await asyncio.gather(*self.recording)


async def test_a_destination_whose_queue_was_full_is_read_again_as_it_drains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing else wakes the reading loop here (no intake; the idle poll is out of reach):
    # the attempts draining the full queue must, or the backlog waits for the poll.
    monkeypatch.setattr(dispatcher_module, "IDLE_POLL", 60.0)
    per_destination = 2
    backlog = per_destination * BUFFER_FACTOR * 5
    daemon = SimpleNamespace(concurrency=per_destination * 4, per_destination=per_destination)
    generation = SimpleNamespace(config=SimpleNamespace(daemon=daemon))
    async with await open_spool(tmp_path / "spool.db") as spool:
        await spool.submit_many(
            [
                (
                    make_event(f"e{n}"),
                    [
                        new_delivery(
                            f"d{n}", order=f"o{n}", destination=DESTINATION, next_attempt_at=0
                        )
                    ],
                )
                for n in range(backlog)
            ],
            source="test",
        )
        runner = RecordingRunner(spool)
        dispatcher = Dispatcher(
            spool,
            lambda: generation,
            BreakerBoard(5, 30.0),
            runner,  # type: ignore[arg-type]
        )
        reading = asyncio.create_task(dispatcher.run())
        await asyncio.sleep(0.5)  # the hung destination's queue fills up; reading leaves it out
        assert runner.attempted == []
        runner.gate.set()
        deadline = time.monotonic() + 20
        while len(runner.attempted) < backlog and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await dispatcher.stop(grace=5)
        await asyncio.wait_for(reading, 5)
        assert sorted(runner.attempted) == sorted(f"d{n}" for n in range(backlog))
        assert (await spool.stats()).by_state.get("done") == backlog
        # read in batches the destination can take, not claimed and put back again and again
        assert spool.commits < backlog * 2
