"""Circuit breakers per destination, as DESIGN §6 describes them."""

from __future__ import annotations

from postbackd.breaker import MAX_COOLDOWN, BreakerBoard

DEST = "https://acme.example:443"


def fail(board: BreakerBoard, times: int, now: float = 0.0) -> list[bool]:
    return [board.record(DEST, False, now) for _ in range(times)]


def test_opens_after_consecutive_failures_only():
    board = BreakerBoard(failures=3, cooldown=30)
    fail(board, 2)
    board.record(DEST, True, 0)  # a success in between resets the count
    assert fail(board, 2) == [False, False]
    assert board.admit(DEST, 0).allowed
    assert fail(board, 1) == [True]
    assert not board.admit(DEST, 1).allowed
    assert board.open_destinations() == {DEST: 30}


def test_waiting_deliveries_are_told_when_to_look_again():
    board = BreakerBoard(failures=1, cooldown=30)
    fail(board, 1, now=100)
    admission = board.admit(DEST, 110)
    assert not admission.allowed
    assert admission.wait_until == 130


def test_one_probe_after_the_cooldown_and_success_closes():
    board = BreakerBoard(failures=1, cooldown=30)
    fail(board, 1, now=0)
    probe = board.admit(DEST, 30)
    assert probe.allowed and probe.probe
    assert not board.admit(DEST, 30).allowed  # only one probe at a time
    board.record(DEST, True, 31)
    assert board.admit(DEST, 31).allowed
    assert board.open_destinations() == {}


def test_a_failed_probe_doubles_the_cooldown_up_to_ten_minutes():
    board = BreakerBoard(failures=1, cooldown=200)
    fail(board, 1, now=0)
    now = 0.0
    cooldowns = []
    for _ in range(4):
        now = board.open_destinations()[DEST]
        assert board.admit(DEST, now).probe
        assert board.record(DEST, False, now)
        cooldowns.append(board.open_destinations()[DEST] - now)
    assert cooldowns == [400, MAX_COOLDOWN, MAX_COOLDOWN, MAX_COOLDOWN]


def test_a_probe_that_never_ran_lets_another_try():
    board = BreakerBoard(failures=1, cooldown=30)
    fail(board, 1)
    assert board.admit(DEST, 30).probe
    board.release_probe(DEST, 31)
    assert board.admit(DEST, 31).probe


def test_zero_disables_and_destinations_are_independent():
    off = BreakerBoard(failures=0, cooldown=30)
    fail(off, 100)
    assert off.admit(DEST, 0).allowed
    board = BreakerBoard(failures=1, cooldown=30)
    fail(board, 1)
    assert board.admit("https://other.example:443", 0).allowed


def test_an_episode_keeps_the_time_it_began_through_failed_probes():
    board = BreakerBoard(failures=2, cooldown=10)
    fail(board, 2, now=100)
    assert board.open_since() == {DEST: 100}
    probe_at = board.open_destinations()[DEST]
    assert board.admit(DEST, probe_at).probe
    board.record(DEST, False, probe_at)
    assert board.open_since() == {DEST: 100}  # reopened: the same episode
    board.record(DEST, True, probe_at + 30)
    assert board.open_since() == {}


def test_turning_breakers_off_on_reload_closes_the_open_ones():
    board = BreakerBoard(failures=1, cooldown=30)
    fail(board, 1)
    assert DEST in board.open_since()
    board.configure(0, 30)
    assert board.open_since() == {} and board.open_destinations() == {}
    assert board.admit(DEST, 0).allowed
