"""The retry policy: N delays mean at most N + 1 attempts, jitter within ±20 %, Retry-After."""

from __future__ import annotations

import random

from postbackd.config.model import DEFAULT_RETRY_SCHEDULE
from postbackd.retry import JITTER, MAX_RETRY_AFTER, decide


def test_each_failure_waits_its_step_with_jitter():
    rng = random.Random(7)
    for attempt, step in enumerate(DEFAULT_RETRY_SCHEDULE, start=1):
        for _ in range(50):
            decision = decide(DEFAULT_RETRY_SCHEDULE, attempt, rng=rng)
            assert decision.retry
            assert step * (1 - JITTER) <= decision.delay <= step * (1 + JITTER)


def test_jitter_spreads_a_burst():
    rng = random.Random(1)
    delays = {round(decide((10.0,), 1, rng=rng).delay, 3) for _ in range(20)}
    assert len(delays) > 10


def test_a_schedule_of_n_delays_gives_n_plus_one_attempts():
    schedule = (1.0, 2.0, 3.0)
    assert all(decide(schedule, attempt).retry for attempt in (1, 2, 3))
    final = decide(schedule, 4)
    assert not final.retry
    assert "4 attempts" in final.reason


def test_retry_off_means_one_attempt():
    decision = decide((), 1)
    assert not decision.retry
    assert "retry is off" in decision.reason


def test_retry_after_wins_over_the_schedule_but_uses_an_attempt():
    assert decide((5.0, 5.0), 1, retry_after=120).delay == 120
    assert not decide((5.0,), 2, retry_after=1).retry  # the schedule still ends


def test_retry_after_is_capped():
    assert decide((5.0,), 1, retry_after=10**9).delay == MAX_RETRY_AFTER
