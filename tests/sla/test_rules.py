"""`postbackd.sla.rules`: which timers a batch starts and cancels, and what a due timer's alert
says."""

from __future__ import annotations

import uuid
from pathlib import Path

from postbackd.config.model import Location, SlaRule
from postbackd.events import Event
from postbackd.samples import load_sample
from postbackd.sla import ALERT_NAMESPACE, alert_event, alert_id, timer_changes
from postbackd.spool import SlaTimer, TimerCancel, TimerStart

HERE = Location(Path("sla.toml"), 1)
SHIP = SlaRule("ship", "order.received", ("order.shipped",), 3600.0, "order.delayed", HERE)
ACME_PRINT = SlaRule(
    "print",
    "order.received",
    ("order.in_production", "order.shipped"),
    600.0,
    "order.failed",
    HERE,
    customer="acme",
)
RULES = {rule.name: rule for rule in (SHIP, ACME_PRINT)}
CUSTOMERS = {"acme", "globex"}


def event(event_id: str, type_: str, customer: str = "acme", order: str | None = "o1") -> Event:
    data = {} if order is None else {"orderId": order}
    return Event(event_id, type_, customer, "2026-12-01T00:00:00Z", data)


def test_alert_ids_are_uuid5_of_rule_customer_and_order() -> None:
    # fixed forever: every node and every version must derive the same id
    assert alert_id("ship", "acme", "o1") == "58a4f661-d405-57a7-823d-f26d1c2e326d"
    assert alert_id("ship", "acme", "o1") == str(uuid.uuid5(ALERT_NAMESPACE, "ship\x00acme\x00o1"))
    assert alert_id("ship", "globex", "o1") != alert_id("ship", "acme", "o1")


def test_a_received_event_starts_the_rules_of_its_customer() -> None:
    changes = timer_changes(RULES, CUSTOMERS, [event("e1", "order.received")])
    assert changes == [
        TimerStart(
            "e1",
            alert_id("ship", "acme", "o1"),
            "ship",
            "acme",
            "o1",
            "order.delayed",
            ("order.shipped",),
            3600.0,
        ),
        TimerStart(
            "e1",
            alert_id("print", "acme", "o1"),
            "print",
            "acme",
            "o1",
            "order.failed",
            ("order.in_production", "order.shipped"),
            600.0,
        ),
    ]
    (only,) = timer_changes(RULES, CUSTOMERS, [event("e2", "order.received", customer="globex")])
    assert isinstance(only, TimerStart) and only.rule == "ship"


def test_an_expected_event_cancels_every_rule_waiting_for_it() -> None:
    assert timer_changes(RULES, CUSTOMERS, [event("e3", "order.shipped")]) == [
        TimerCancel("e3", "order.shipped", "acme", "o1", ("ship", "print"))
    ]
    assert timer_changes(RULES, CUSTOMERS, [event("e4", "order.in_production")]) == [
        TimerCancel("e4", "order.in_production", "acme", "o1", ("print",))
    ]


def test_events_without_an_order_or_rules_touch_nothing() -> None:
    assert timer_changes(RULES, CUSTOMERS, [event("e5", "order.received", order=None)]) == []
    assert timer_changes({}, CUSTOMERS, [event("e6", "order.received")]) == []
    unknown = event("e8", "order.received", customer="stranger")
    assert timer_changes(RULES, CUSTOMERS, [unknown]) == []
    assert timer_changes(RULES, CUSTOMERS, [event("e7", "order.delivered")]) == []


def timer(order: str = "o1") -> SlaTimer:
    return SlaTimer(
        id=alert_id("ship", "acme", order),
        rule="ship",
        customer="acme",
        order_id=order,
        emit="order.delayed",
        started_by="e1",
        started_at=1764547200.0,
        due_at=1764550800.0,
        state="pending",
    )


def test_the_alert_carries_the_orders_last_data_and_the_rule() -> None:
    last = load_sample("order.in_production")
    alert = alert_event(SHIP, timer(last["data"]["orderId"]), last)
    assert alert.id == alert_id("ship", "acme", last["data"]["orderId"])
    assert alert.type == "order.delayed" and alert.customer == "acme"
    assert alert.data["items"] == last["data"]["items"]
    assert alert.data["sla"] == {
        "rule": "ship",
        "after": "order.received",
        "expect": ["order.shipped"],
        "within": "1h",
        "startedAt": "2025-12-01T00:00:00.000Z",
        "dueAt": "2025-12-01T01:00:00.000Z",
        "startedBy": "e1",
        "lastEventId": last["id"],
        "lastEventType": "order.in_production",
    }
    assert alert.data["delay"] == {"reason": "no order.shipped within 1h of order.received"}


def test_an_alert_keeps_a_given_delay_reason_and_needs_no_last_event() -> None:
    last = {
        "id": "x",
        "type": "order.delayed",
        "data": {
            "orderId": "o1",
            "delay": {"reason": "paper stock", "expectedShipDate": "2026-12-02"},
        },
    }
    kept = alert_event(SHIP, timer(), last)
    assert kept.data["delay"] == {"reason": "paper stock", "expectedShipDate": "2026-12-02"}
    bare = alert_event(SHIP, timer("o9"), None)
    assert bare.order_id == "o9" and bare.data["sla"]["lastEventId"] is None
    assert bare.data["delay"]["reason"].startswith("no order.shipped within 1h")
