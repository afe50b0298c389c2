"""``[[sla]]`` rules: which timers an event starts or cancels, and the delay alert a due timer
becomes.

Pure functions: intake asks `timer_changes` for each batch and the spool applies them in the
batch's transaction; the firing loop (`postbackd.sla.firing`) turns a due timer into an event
with `alert_event` and submits it like any source's, so every trigger can send it.

An alert's id is derived from rule, customer and order (`alert_id`): a timer fired twice — a
node that died between storing the alert and marking the timer, a claim that ran out — gives
the same event id, which intake stores once.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from postbackd.config import SlaRule
from postbackd.events import Event, now_iso
from postbackd.spool import SlaTimer, TimerCancel, TimerChange, TimerStart
from postbackd.units import format_duration

# Fixed forever: an alert's id must be the same on every node and every version.
ALERT_NAMESPACE = uuid.UUID("5b0e7c1d-93a4-4f2e-8c61-0d7a9e3f42b8")


def alert_id(rule: str, customer: str, order_id: str) -> str:
    """The id of the delay alert of `rule` for one order (a UUIDv5)."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{rule}\x00{customer}\x00{order_id}"))


def timer_changes(
    rules: Mapping[str, SlaRule], customers: Collection[str], events: Sequence[Event]
) -> list[TimerChange]:
    """The timers `events` start (their type is a rule's `after`) and cancel (a rule expects
    their type), in event order. Events without an order id, and events of customers not in
    `customers` (the configured ones: an alert for anyone else would go nowhere), touch no
    timer."""
    if not rules:
        return []
    changes: list[TimerChange] = []
    for event in events:
        order_id = event.order_id
        if order_id is None or event.customer not in customers:
            continue
        applying = [rule for rule in rules.values() if rule.applies_to(event.customer)]
        ended = tuple(rule.name for rule in applying if event.type in rule.expect)
        if ended:
            changes.append(TimerCancel(event.id, event.type, event.customer, order_id, ended))
        changes.extend(
            TimerStart(
                event_id=event.id,
                id=alert_id(rule.name, event.customer, order_id),
                rule=rule.name,
                customer=event.customer,
                order_id=order_id,
                emit=rule.emit,
                expect=rule.expect,
                within=rule.within,
            )
            for rule in applying
            if event.type == rule.after
        )
    return changes


def alert_event(rule: SlaRule, timer: SlaTimer, last: Mapping[str, Any] | None) -> Event:
    """The delay alert of a due timer: the order's last known data (`last`, its newest stored
    event, when there is one) with ``sla`` saying which rule ran out and when, and a
    ``delay.reason`` unless the data carries one already."""
    last_data = last.get("data") if last is not None else None
    data: dict[str, Any] = dict(last_data) if isinstance(last_data, Mapping) else {}
    data.setdefault("orderId", timer.order_id)
    within = format_duration(rule.within)
    expected = " or ".join(rule.expect)
    data["sla"] = {
        "rule": rule.name,
        "after": rule.after,
        "expect": list(rule.expect),
        "within": within,
        "startedAt": _iso(timer.started_at),
        "dueAt": _iso(timer.due_at),
        "startedBy": timer.started_by,
        "lastEventId": last.get("id") if last is not None else None,
        "lastEventType": last.get("type") if last is not None else None,
    }
    delay = data.get("delay")
    if not isinstance(delay, Mapping) or "reason" not in delay:
        data["delay"] = {
            **(delay if isinstance(delay, Mapping) else {}),
            "reason": f"no {expected} within {within} of {rule.after}",
        }
    return Event(id=timer.id, type=rule.emit, customer=timer.customer, time=now_iso(), data=data)


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
