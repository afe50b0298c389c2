"""What is new since an order's previous event (`postbackd.changes`): examples and properties."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from postbackd.changes import compute_changes
from postbackd.samples import load_sample


def parcel(code: str, **fields: Any) -> dict[str, Any]:
    return {"trackingCode": code, "trackingUrl": f"https://track.example/{code}", **fields}


def item(ref: str, status: str, *fulfillments: dict[str, Any]) -> dict[str, Any]:
    return {
        "itemReferenceId": ref,
        "quantity": 1,
        "fulfillmentStatus": status,
        "fulfillments": list(fulfillments),
    }


def envelope(event_type: str, status: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": event_type,
        "data": {"orderId": "o1", "fulfillmentStatus": status, "items": list(items)},
    }


def codes(parcels: Any) -> list[str]:
    return [p["trackingCode"] for p in parcels]


def refs(items: Any) -> list[str]:
    return [i["itemReferenceId"] for i in items]


# ---------------------------------------------------------------- examples


def test_a_second_partial_shipment_shows_only_the_parcel_that_just_left() -> None:
    first = envelope(
        "order.shipped",
        "partially_shipped",
        item("A", "shipped", parcel("P1")),
        item("B", "in_production"),
    )
    second = envelope(
        "order.shipped",
        "shipped",
        item("A", "shipped", parcel("P1")),
        item("B", "shipped", parcel("P2")),
    )
    changes = compute_changes(first, second)
    assert not changes.first
    assert changes.previous_type == "order.shipped"
    assert changes.previous_status == "partially_shipped"
    assert changes.status_changed
    assert codes(changes.parcels) == ["P1", "P2"]
    assert codes(changes.new_parcels) == ["P2"]
    assert refs(changes.new_parcels[0]["items"]) == ["B"]
    assert codes(changes.new_tracking) == ["P2"]
    assert refs(changes.items_shipped) == ["B"]
    assert refs(changes.items_status_changed) == ["B"]
    assert changes.items_status_changed[0]["previousFulfillmentStatus"] == "in_production"
    assert changes.items_cancelled == ()
    assert changes.new_items == ()


def test_the_first_event_of_an_order_is_all_new() -> None:
    shipped = load_sample("order.shipped")
    changes = compute_changes(None, shipped)
    assert changes.first and changes.previous_type is None and changes.previous_status is None
    assert changes.status_changed
    assert len(changes.parcels) == 4
    assert changes.new_parcels == changes.parcels == changes.new_tracking
    assert refs(changes.new_items) == ["ACME-100234-1", "ACME-100234-2"]
    assert refs(changes.items_shipped) == refs(changes.new_items)
    assert all("fulfillments" not in i for i in changes.new_items)


def test_a_parcel_holding_several_items_is_one_parcel() -> None:
    shared = parcel("P1", carrierName="DHL")
    now = envelope(
        "order.shipped", "shipped", item("A", "shipped", shared), item("B", "shipped", shared)
    )
    changes = compute_changes(None, now)
    assert codes(changes.parcels) == ["P1"]
    assert refs(changes.parcels[0]["items"]) == ["A", "B"]
    assert changes.parcels[0]["carrierName"] == "DHL"


def test_partial_cancellation_names_the_cancelled_items_only_once() -> None:
    before = envelope(
        "order.in_production",
        "in_production",
        item("A", "in_production"),
        item("B", "in_production"),
    )
    now = envelope(
        "order.cancelled", "in_production", item("A", "canceled"), item("B", "in_production")
    )
    changes = compute_changes(before, now)
    assert refs(changes.items_cancelled) == ["A"]
    assert not changes.status_changed
    again = compute_changes(now, copy.deepcopy(now))
    assert again.items_cancelled == ()


def test_a_package_update_reports_the_parcel_whose_status_moved() -> None:
    shipped = load_sample("order.shipped")
    update = load_sample("order.package_status_updated")
    changes = compute_changes(shipped, update)
    assert changes.new_parcels == ()
    moved = {p["trackingCode"]: p for p in changes.parcels_status_changed}
    assert moved["1234567890"]["packageStatus"] == "out_for_delivery"
    assert moved["1234567890"]["previousPackageStatus"] is None
    calm = compute_changes(update, copy.deepcopy(update))
    assert calm.parcels_status_changed == ()


def test_a_new_tracking_url_is_new_tracking_but_not_a_new_parcel() -> None:
    before = envelope("order.shipped", "shipped", item("A", "shipped", parcel("P1")))
    now = envelope(
        "order.in_transit",
        "in_transit",
        item("A", "in_transit", parcel("P1", trackingUrl="https://carrier.example/P1")),
    )
    changes = compute_changes(before, now)
    assert changes.new_parcels == ()
    assert codes(changes.new_tracking) == ["P1"]
    assert changes.items_shipped == ()


def test_an_untracked_parcel_seen_again_is_not_new() -> None:
    untracked = {"carrierName": "Courier", "shipmentMethodUid": "local"}
    before = envelope("order.shipped", "shipped", item("A", "shipped", untracked))
    changes = compute_changes(before, copy.deepcopy(before))
    assert changes.new_parcels == () and changes.new_tracking == ()
    assert len(compute_changes(None, before).new_parcels) == 1
    assert compute_changes(None, before).new_tracking == ()


def test_an_item_missing_from_the_event_is_not_news() -> None:
    before = envelope(
        "order.shipped",
        "shipped",
        item("A", "shipped", parcel("P1")),
        item("B", "shipped", parcel("P2")),
    )
    now = envelope("order.package_status_updated", "shipped", item("B", "shipped", parcel("P2")))
    changes = compute_changes(before, now)
    assert changes.items_cancelled == () and changes.items_status_changed == ()
    assert changes.new_parcels == () and changes.new_items == ()


def test_malformed_parts_are_skipped_not_fatal() -> None:
    odd: dict[str, Any] = {
        "type": "order.shipped",
        "data": {"items": [1, {"fulfillments": "nope"}, {"fulfillments": [None, parcel("P9")]}]},
    }
    changes = compute_changes({"type": "x", "data": {"items": "nope"}}, odd)
    assert codes(changes.new_parcels) == ["P9"]
    assert len(changes.new_items) == 2
    assert compute_changes({"data": None}, {"type": "t"}).parcels == ()


def test_items_without_references_are_told_apart_by_position() -> None:
    a = {"fulfillmentStatus": "shipped", "fulfillments": [parcel("P1")]}
    b = {"fulfillmentStatus": "printed", "fulfillments": []}
    changes = compute_changes(None, {"type": "t", "data": {"items": [a, b]}})
    assert len(changes.new_items) == 2
    assert len(changes.items_shipped) == 1


def test_the_context_is_json_ready_and_shares_nothing_with_the_event() -> None:
    shipped = load_sample("order.shipped")
    pristine = copy.deepcopy(shipped)
    context = compute_changes(None, shipped).as_context()
    json.dumps(context)
    context["parcels"][0]["trackingCode"] = "changed"
    context["new_items"][0]["quantity"] = -1
    assert shipped == pristine
    assert set(context) == {
        "first",
        "previous_type",
        "previous_status",
        "status_changed",
        "parcels",
        "new_parcels",
        "new_tracking",
        "parcels_status_changed",
        "new_items",
        "items_shipped",
        "items_cancelled",
        "items_status_changed",
    }


# ---------------------------------------------------------------- properties

STATUSES = st.sampled_from(
    ["received", "in_production", "printed", "shipped", "canceled", "cancelled"]
)
CODES = st.sampled_from(["P1", "P2", "P3", "P4", "P5"])
FULFILLMENT = st.builds(
    lambda code, url: {"trackingCode": code, "trackingUrl": url},
    CODES,
    st.sampled_from(["u1", "u2"]),
)
ITEM = st.builds(
    lambda ref, status, fulfillments: item(ref, status, *fulfillments),
    st.sampled_from(["A", "B", "C", "D"]),
    STATUSES,
    st.lists(FULFILLMENT, max_size=3),
)
ORDER = st.builds(
    lambda status, items: envelope("order.shipped", status, *items),
    STATUSES,
    st.lists(ITEM, max_size=4, unique_by=lambda i: i["itemReferenceId"]),
)


@given(ORDER)
def test_an_event_compared_with_itself_has_nothing_new(order: dict[str, Any]) -> None:
    changes = compute_changes(order, copy.deepcopy(order))
    assert changes.new_parcels == changes.new_tracking == changes.new_items == ()
    assert changes.items_shipped == changes.items_cancelled == changes.items_status_changed == ()
    assert changes.parcels_status_changed == ()
    assert not changes.status_changed and not changes.first


@given(ORDER)
def test_against_no_previous_event_everything_is_new(order: dict[str, Any]) -> None:
    changes = compute_changes(None, order)
    assert changes.new_parcels == changes.parcels
    assert refs(changes.new_items) == [i["itemReferenceId"] for i in order["data"]["items"]]


@given(ORDER, ORDER)
def test_new_parcels_are_exactly_the_tracking_codes_not_seen_before(
    before: dict[str, Any], now: dict[str, Any]
) -> None:
    changes = compute_changes(before, now)
    seen = {f["trackingCode"] for i in before["data"]["items"] for f in i["fulfillments"]}
    current = {f["trackingCode"] for i in now["data"]["items"] for f in i["fulfillments"]}
    assert set(codes(changes.new_parcels)) == current - seen
    assert len(codes(changes.parcels)) == len(current)
    assert set(codes(changes.new_parcels)) <= set(codes(changes.new_tracking))
    for new in changes.new_parcels:
        assert {i["itemReferenceId"] for i in new["items"]} <= set(refs(changes.items_shipped))


@given(ORDER, ORDER)
def test_an_item_is_cancelled_once_and_only_by_its_status(
    before: dict[str, Any], now: dict[str, Any]
) -> None:
    changes = compute_changes(before, now)
    old = {i["itemReferenceId"]: i["fulfillmentStatus"] for i in before["data"]["items"]}
    for cancelled in changes.items_cancelled:
        assert cancelled["fulfillmentStatus"] in ("canceled", "cancelled")
        assert old.get(cancelled["itemReferenceId"]) not in ("canceled", "cancelled")
    later = compute_changes(now, copy.deepcopy(now))
    assert later.items_cancelled == ()
