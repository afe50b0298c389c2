"""The episode rules of the operational alerts, with plain numbers for time."""

from __future__ import annotations

import pytest

from postbackd.alerts import Alert, DeadWindows, HeldConditions
from postbackd.alerts.episodes import MAX_LISTED, MAX_TEXT, clip, episode_id
from postbackd.events import SYSTEM_TYPES, parse_event

DEST = "http://127.0.0.1:9999"


def kinds(transitions) -> list[tuple[str, str]]:
    return [(t.kind, t.subject) for t in transitions]


def test_a_condition_is_told_once_after_it_has_lasted_and_once_when_it_heals() -> None:
    held = HeldConditions()
    assert held.observe({DEST: 100.0}, after=60, now=100.0) == []
    assert held.observe({DEST: 100.0}, after=60, now=159.0) == []
    fired = held.observe({DEST: 100.0}, after=60, now=160.0)
    assert kinds(fired) == [("fired", DEST)]
    assert fired[0].episode == episode_id(DEST, 100.0)
    assert fired[0].lasted == 60.0
    for now in (161.0, 500.0, 10_000.0):  # still failing: nothing more to say
        assert held.observe({DEST: 100.0}, after=60, now=now) == []
    resolved = held.observe({}, after=60, now=10_001.0)
    assert kinds(resolved) == [("resolved", DEST)]
    assert resolved[0].episode == fired[0].episode  # one episode: failing, then recovered
    assert held.observe({}, after=60, now=10_002.0) == []


def test_a_blip_shorter_than_the_setting_is_nobodys_business() -> None:
    held = HeldConditions()
    assert held.observe({DEST: 100.0}, after=60, now=130.0) == []
    assert held.observe({}, after=60, now=131.0) == []
    assert held.observe({DEST: 200.0}, after=60, now=230.0) == []  # a new, still short episode


def test_healing_and_breaking_again_between_two_looks_ends_one_episode_and_starts_another() -> None:
    held = HeldConditions()
    first = held.observe({DEST: 100.0}, after=10, now=120.0)
    changes = held.observe({DEST: 300.0}, after=10, now=320.0)
    assert kinds(changes) == [("resolved", DEST), ("fired", DEST)]
    assert changes[0].episode == first[0].episode
    assert changes[1].episode == episode_id(DEST, 300.0) != first[0].episode


def test_subjects_are_independent() -> None:
    held = HeldConditions()
    other = "https://hooks.example:443"
    assert kinds(held.observe({DEST: 0.0, other: 50.0}, after=60, now=60.0)) == [("fired", DEST)]
    assert kinds(held.observe({other: 50.0}, after=60, now=110.0)) == [
        ("resolved", DEST),
        ("fired", other),
    ]
    assert held.alerted() == [other]


def test_dead_deliveries_of_a_destination_in_one_window_are_one_batch() -> None:
    windows = DeadWindows()
    for n in range(3):
        windows.add(DEST, {"deliveryId": f"d{n}"}, now=100.0 + n)
    windows.add("smtp:mail:25", {"deliveryId": "m"}, now=130.0)
    assert windows.closed(window=60, now=159.0) == []
    (batch,) = windows.closed(window=60, now=160.0)
    assert (batch.destination, batch.count) == (DEST, 3)
    assert [d["deliveryId"] for d in batch.listed] == ["d0", "d1", "d2"]
    assert batch.episode == episode_id(DEST, 100.0)
    windows.add(DEST, {"deliveryId": "late"}, now=161.0)  # a new window
    closed = windows.closed(window=60, now=221.0)
    assert sorted((b.destination, b.count) for b in closed) == [(DEST, 1), ("smtp:mail:25", 1)]


def test_a_flood_of_dead_deliveries_is_one_bounded_alert() -> None:
    windows = DeadWindows()
    for n in range(10_000):
        windows.add(DEST, {"deliveryId": f"d{n}"}, now=100.0)
    (batch,) = windows.closed(window=1, now=101.0)
    assert batch.count == 10_000
    assert len(batch.listed) == MAX_LISTED


def test_episode_ids_are_bounded_and_stable_whatever_the_subject() -> None:
    long_host = "https://" + "a" * 253 + ":443"
    assert episode_id(long_host, 1.5) == episode_id(long_host, 1.5)
    assert len(episode_id(long_host, 1e12)) < 40
    assert episode_id("\udcff lone surrogate", 0.0)  # never raises
    assert episode_id(DEST, 1.0) != episode_id(DEST, 2.0)


@pytest.mark.parametrize("event_type", SYSTEM_TYPES)
def test_an_alert_is_a_valid_event_whose_id_names_type_and_episode(event_type: str) -> None:
    alert = Alert(event_type, episode_id(DEST, 0.0), "firing", "s", 0.0, {"destination": DEST})
    kind = event_type.removeprefix("postbackd.")
    assert alert.event_id == f"postbackd:{kind}:{alert.episode}"
    event = parse_event(
        {"id": alert.event_id, "type": event_type, "customer": "postbackd", "data": alert.data("n")}
    )
    assert event.type == event_type
    assert event.data["details"] == {"destination": DEST}
    assert event.data["since"] == "1970-01-01T00:00:00.000Z"


def test_errors_are_clipped() -> None:
    assert clip("short") == "short"
    clipped = clip("x" * 10_000)
    assert len(clipped) == MAX_TEXT
    assert clipped.endswith("…")
