"""Backfill: deliveries for stored events that a trigger matches now.

A new customer integration, or a trigger that was inactive, starts with no postbacks for the
events that came before it. A backfill walks the trigger's customer's stored events received
in a time window, oldest first, and gives each event the trigger matches now the delivery the
router would have made (rendered with today's template). The delivery id is the router's
stable `delivery_id(event, trigger)`, so an event that already has one is skipped: a second
backfill of the same window adds nothing, and neither does one that overlaps intake.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from postbackd import jsoncodec
from postbackd.config import Trigger
from postbackd.events import Event, EventRejected, parse_event
from postbackd.logs import get_logger
from postbackd.router import Router, delivery_id
from postbackd.spool import NewDelivery, Spool, StoredEvent

log = get_logger("postbackd.backfill")

PAGE = 500


class BackfillRefused(ValueError):
    """The backfill cannot run as asked: `field` names the input at fault (``trigger``:
    unknown or inactive; ``until``: an empty window), `unknown` an unknown trigger."""

    def __init__(self, message: str, field: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.unknown = unknown


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What a backfill found and did. `matched`: stored events in the window that the trigger
    matches; `existing`: those that already had its delivery; `added`: deliveries created (on
    a dry run, those that would be)."""

    trigger: str
    since: float
    until: float | None
    matched: int
    existing: int
    added: int
    dry_run: bool
    unreadable: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "since": self.since,
            "until": self.until,
            "matched": self.matched,
            "existing": self.existing,
            "added": self.added,
            "dry_run": self.dry_run,
            "unreadable": self.unreadable,
        }


def backfill_trigger(router: Router, name: str) -> Trigger:
    """The trigger named `name` in the router's configuration, active; BackfillRefused says
    what is wrong otherwise."""
    trigger = router.config.triggers.get(name)
    if trigger is None:
        known = ", ".join(sorted(router.config.triggers)) or "none"
        raise BackfillRefused(
            f"no trigger named {name!r} (triggers: {known})", "trigger", unknown=True
        )
    if not trigger.active:
        where = trigger.location
        raise BackfillRefused(
            f"trigger {name!r} is {trigger.status}: it matches no event now; make it active "
            f"({where}) and reload first",
            "trigger",
        )
    return trigger


async def backfill(
    spool: Spool,
    router: Router,
    trigger_name: str,
    *,
    since: float,
    until: float | None = None,
    dry_run: bool = False,
) -> BackfillResult:
    """Create the trigger's missing deliveries for the stored events of [since, until).

    One transaction per page of events; an interrupted backfill is finished by running it
    again. Raises BackfillRefused for an unknown or inactive trigger or an empty window.
    """
    trigger = backfill_trigger(router, trigger_name)
    if until is not None and until <= since:
        raise BackfillRefused("the window is empty: until must be later than since", "until")
    matched = existing = added = unreadable = 0
    after = 0
    while True:
        page = await spool.verbs.stored_events(trigger.customer, since, until, after, PAGE)
        if not page:
            break
        after = page[-1].seq
        events: list[Event] = []
        for stored in page:
            event = _event_of(stored)
            if event is None:
                unreadable += 1
            elif trigger in router.matching_triggers(event):
                events.append(event)
        matched += len(events)
        ids = [delivery_id(event.id, trigger.name) for event in events]
        missing = set(await spool.verbs.missing_ids(ids)) if ids else set()
        todo = [event for event, id_ in zip(events, ids, strict=True) if id_ in missing]
        existing += len(events) - len(todo)
        if dry_run:
            added += len(todo)
            continue
        if not todo:
            continue
        rows = await asyncio.to_thread(_render_all, router, trigger, todo)  # off the loop
        created = await spool.verbs.add_deliveries(rows)
        added += created
        existing += len(todo) - created  # routed meanwhile by intake or another backfill
    result = BackfillResult(
        trigger.name, since, until, matched, existing, added, dry_run, unreadable
    )
    log.info("backfill" + (" (dry run)" if dry_run else ""), **result.to_dict())
    return result


def _render_all(
    router: Router, trigger: Trigger, events: list[Event]
) -> list[tuple[str, NewDelivery]]:
    return [(event.id, router.new_delivery(trigger, event)) for event in events]


def _event_of(stored: StoredEvent) -> Event | None:
    """The stored event, parsed as at intake; None (logged) for one that no longer parses
    (stored by an older version with other rules): it is skipped, never guessed at."""
    try:
        return parse_event(jsoncodec.loads(stored.body))
    except (EventRejected, ValueError) as exc:
        log.warning("backfill skips an event it cannot read", event_id=stored.id, error=str(exc))
        return None
