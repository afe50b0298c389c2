"""When a condition the operator must hear about becomes an alert: the episode logic.

An *episode* is one stretch of trouble of one subject — a destination whose breaker stays open,
a source that is not ready, a window of dead deliveries at one destination. Each episode is
told once when it starts to matter and once when it ends, however many deliveries it touches:
its id (when it began, and a digest of the subject) is part of the event id, so raising the
same episode again is an idempotent duplicate for the spool, not a second notification.

Nothing here does I/O or reads a clock: every method takes `now`, so the rules are tested
with plain numbers (tests/alerts/test_episodes.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from postbackd.events import SYSTEM_EVENT_ID_PREFIX, SYSTEM_TYPE_PREFIX

MAX_LISTED = 50  # dead deliveries named in one alert; the rest are counted
MAX_TEXT = 500  # characters of an error kept in an alert (a receiver chooses what it answers)

AlertStatus = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Alert:
    """One notification: the `data` of a ``postbackd.*`` event, and the id that makes it one."""

    type: str  # one of events.SYSTEM_TYPES
    episode: str
    status: AlertStatus
    summary: str
    since: float  # when the episode began (epoch seconds)
    details: Mapping[str, Any] = field(hash=False, compare=False)

    @property
    def event_id(self) -> str:
        """``postbackd:destination_failing:<episode>``: the same for every re-emission."""
        kind = self.type.removeprefix(SYSTEM_TYPE_PREFIX)
        return f"{SYSTEM_EVENT_ID_PREFIX}{kind}:{self.episode}"

    def data(self, node: str) -> dict[str, Any]:
        """The event's ``data``: what a template sees at top level."""
        return {
            "alert": self.type.removeprefix(SYSTEM_TYPE_PREFIX),
            "status": self.status,
            "summary": self.summary,
            "episode": self.episode,
            "since": iso_time(self.since),
            "node": node,
            "details": dict(self.details),
        }


def episode_id(subject: str, since: float) -> str:
    """When the episode began (milliseconds) and a digest of its subject: bounded in length
    whatever the subject (a destination's host name may be 253 characters)."""
    digest = hashlib.sha256(subject.encode("utf-8", "backslashreplace")).hexdigest()[:16]
    return f"{int(since * 1000)}-{digest}"


def iso_time(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def clip(text: str) -> str:
    """An error as an alert carries it: at most MAX_TEXT characters."""
    if len(text) <= MAX_TEXT:
        return text
    return text[: MAX_TEXT - 1] + "…"


@dataclass(frozen=True)
class Transition:
    """A subject's episode became worth an alert (`fired`), or ended after one (`resolved`)."""

    kind: Literal["fired", "resolved"]
    subject: str
    since: float
    now: float

    @property
    def episode(self) -> str:
        return episode_id(self.subject, self.since)

    @property
    def lasted(self) -> float:
        return max(0.0, self.now - self.since)


@dataclass
class _Held:
    since: float
    alerted: bool = False


class HeldConditions:
    """Subjects in trouble, each with when its trouble began; an alert once it has lasted
    `after` seconds, and a recovery only for an episode that was alerted (a blip that healed
    before `after` is nobody's business)."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}

    def observe(self, troubled: Mapping[str, float], after: float, now: float) -> list[Transition]:
        """`troubled`: every subject in trouble now, with when its episode began."""
        transitions: list[Transition] = []
        for subject, held in list(self._held.items()):
            since = troubled.get(subject)
            if since is not None and since == held.since:
                continue
            # healed, or healed and broke again between two looks: the old episode ended
            if held.alerted:
                transitions.append(Transition("resolved", subject, held.since, now))
            del self._held[subject]
        for subject, since in troubled.items():
            held = self._held.setdefault(subject, _Held(since))
            if not held.alerted and now - since >= after:
                held.alerted = True
                transitions.append(Transition("fired", subject, since, now))
        return transitions

    def alerted(self) -> list[str]:
        return [subject for subject, held in self._held.items() if held.alerted]


@dataclass
class _Window:
    opened: float
    listed: list[Mapping[str, Any]] = field(default_factory=list)
    count: int = 0


@dataclass(frozen=True)
class DeadBatch:
    """The dead deliveries of one destination in one window: one alert."""

    destination: str
    opened: float
    listed: tuple[Mapping[str, Any], ...]
    count: int

    @property
    def episode(self) -> str:
        return episode_id(self.destination, self.opened)


class DeadWindows:
    """Dead deliveries gathered per destination: the first opens a window of `window`
    seconds, and when it closes one alert names them all (MAX_LISTED of them, and the count).
    A destination whose deliveries die by the thousand yields one alert per window."""

    def __init__(self) -> None:
        self._open: dict[str, _Window] = {}

    def add(self, destination: str, delivery: Mapping[str, Any], now: float) -> None:
        window = self._open.setdefault(destination, _Window(now))
        window.count += 1
        if len(window.listed) < MAX_LISTED:
            window.listed.append(delivery)

    def closed(self, window: float, now: float) -> list[DeadBatch]:
        """The windows that have lasted `window` seconds, taken out."""
        due = [name for name, w in self._open.items() if now - w.opened >= window]
        batches = []
        for name in due:
            w = self._open.pop(name)
            batches.append(DeadBatch(name, w.opened, tuple(w.listed), w.count))
        return batches
