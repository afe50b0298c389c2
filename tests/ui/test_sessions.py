"""The UI's login throttle and server-side sessions, as units (the daemon-level tests are in
tests/faults/test_ui_login.py)."""

from __future__ import annotations

import pytest

from postbackd.ui.auth import (
    LIFETIME,
    LoginThrottle,
    SessionSigner,
    client_key,
    retry_after_header,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_few_failures_are_free_then_the_wait_doubles_up_to_a_cap() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, free_failures=3, first_delay=1.0, max_delay=8.0)
    waits = []
    for _ in range(8):
        clock.now += max(throttle.wait("192.0.2.1"), 0.0)  # a patient guesser
        waits.append(throttle.failed("192.0.2.1").retry_after)
    assert waits == [0, 0, 0, 1, 2, 4, 8, 8]
    assert throttle.wait("192.0.2.1") == 8.0
    assert throttle.wait("192.0.2.2") == 0.0  # another address is not slowed
    clock.now += 3
    assert throttle.wait("192.0.2.1") == 5.0


def test_a_right_token_resets_the_address() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, free_failures=2)
    for _ in range(3):
        throttle.failed("192.0.2.1")
    assert throttle.wait("192.0.2.1") > 0
    throttle.succeeded("192.0.2.1")
    assert throttle.wait("192.0.2.1") == 0 and len(throttle) == 0
    assert throttle.failed("192.0.2.1").failures == 1


def test_one_log_line_per_wait_for_refused_logins() -> None:
    throttle = LoginThrottle(Clock(), free_failures=0)
    throttle.failed("192.0.2.1")
    assert [throttle.first_refusal("192.0.2.1") for _ in range(3)] == [True, False, False]
    assert not throttle.first_refusal("192.0.2.9")


def test_memory_is_bounded_and_quiet_addresses_are_forgotten() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, max_addresses=100)
    for index in range(5000):
        throttle.failed(f"10.{index // 65536}.{index // 256 % 256}.{index % 256}")
    assert len(throttle) == 100
    clock.now += 4 * 3600
    throttle.failed("192.0.2.1")
    assert len(throttle) == 1


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::/64"),
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_client_key(address: str | None, key: str) -> None:
    assert client_key(address) == key


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after_header(s) for s in (0.0, 0.2, 1.0, 1.01, 299.5)] == [
        "1",
        "1",
        "1",
        "2",
        "300",
    ]


def test_a_logged_out_session_is_refused_though_its_cookie_is_well_signed() -> None:
    signer = SessionSigner()
    session, cookie = signer.issue("tok", "u")
    _, other_cookie = signer.issue("tok", "u")
    assert signer.read("tok", cookie) == session
    signer.end(session)
    assert signer.read("tok", cookie) is None
    assert signer.read("tok", other_cookie) is not None  # only that session ended
    anonymous, anonymous_cookie = signer.issue("tok", "a")
    assert signer.read("tok", anonymous_cookie) == anonymous and signer.live_sessions == 1


def test_a_session_from_another_process_is_refused() -> None:
    secret = b"s" * 32
    _, cookie = SessionSigner(secret).issue("tok", "u")
    assert SessionSigner(secret).read("tok", cookie) is None  # a restart logs everyone out


def test_live_sessions_are_bounded_the_oldest_ending_first() -> None:
    signer = SessionSigner(max_sessions=3)
    cookies = [signer.issue("tok", "u")[1] for _ in range(5)]
    assert signer.live_sessions == 3
    assert [signer.read("tok", c) is not None for c in cookies] == [False, False, True, True, True]


def test_expired_sessions_leave_the_table() -> None:
    signer = SessionSigner()
    session, cookie = signer.issue("tok", "u")
    assert signer.read("tok", cookie, now=session.issued + LIFETIME + 1) is None
    signer._live[session.nonce] = session.issued - int(LIFETIME) - 10  # as if issued long ago
    signer.issue("tok", "u")
    assert session.nonce not in signer._live and signer.live_sessions == 1
