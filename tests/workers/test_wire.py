"""The socket between a daemon and its attempt workers, over a real socket pair."""

from __future__ import annotations

import asyncio
import pickle
import socket
import threading

import pytest

from postbackd.plugin import Delivery, Outcome
from postbackd.testing import make_delivery, make_event
from postbackd.workers.wire import HEADER, MOST, Answer, Call, Channel, FrameError, Ready


def delivery(n: int = 1) -> Delivery:
    return make_delivery(make_event(f"e-{n}"), trigger="acme-all")


async def pair() -> tuple[Channel, Channel]:
    a, b = socket.socketpair()
    return await Channel.over(a), await Channel.over(b)


async def test_what_is_sent_in_one_turn_arrives_in_one_frame_in_order() -> None:
    main, worker = await pair()
    calls = [Call(n, "id", "acme-all", delivery(n), None) for n in range(50)]
    for call in calls:
        main.send(call)
    assert await worker.receive() == calls  # one frame: all fifty, as sent
    worker.send(Ready(1234))
    worker.send(Answer(7, Outcome.ok(status=200), 1.5, 0.25))
    ready, answer = await main.receive() or []
    assert ready == Ready(1234)
    assert answer.number == 7 and answer.outcome.status == 200 and answer.duration == 0.25
    main.close()
    assert await worker.receive() is None  # the peer's end closed: end-of-file
    worker.close()


async def test_an_outcome_that_cannot_be_pickled_travels_without_its_records() -> None:
    main, worker = await pair()
    lock = threading.Lock()  # a plugin's record holding something no pickle can carry
    odd = Outcome.ok(status=200, request={"lock": lock}, response={"status": 200})
    worker.send(Answer(1, odd))
    worker.send(Answer(2, Outcome.ok(status=204, request={"url": "http://r/"})))
    first, second = await main.receive() or []
    assert first.outcome.status == 200
    assert first.outcome.request is None and first.outcome.response is None
    assert "could not be sent to the main process" in first.outcome.detail
    assert second.outcome.request == {"url": "http://r/"}  # the others untouched
    main.close()
    worker.close()


@pytest.mark.parametrize(
    "frame, problem",
    [
        ((MOST + 1).to_bytes(HEADER, "big"), "a frame of"),
        (len(p := pickle.dumps({"not": "a list"})).to_bytes(HEADER, "big") + p, "not a list"),
    ],
)
async def test_a_frame_not_of_this_protocol_is_refused(frame: bytes, problem: str) -> None:
    raw, theirs = socket.socketpair()
    channel = await Channel.over(theirs)
    raw.sendall(frame)
    with pytest.raises(FrameError, match=problem):
        await asyncio.wait_for(channel.receive(), 5)
    raw.close()
    channel.close()


async def test_a_frame_cut_short_is_end_of_file() -> None:
    raw, theirs = socket.socketpair()
    channel = await Channel.over(theirs)
    raw.sendall((100).to_bytes(HEADER, "big") + b"only part")
    raw.close()
    assert await asyncio.wait_for(channel.receive(), 5) is None
    channel.close()
