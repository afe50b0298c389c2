"""What is new in an order since its previous event: the ``changes`` a template sees.

An order platform sends the whole order document with every event, so a template that writes
"your parcel has left" would otherwise repeat every parcel of the order on the second partial
shipment. The router hands this module the order's previous stored event (or None for the
first one) and the current event; the result is fixed with the payload at routing time.

Pure functions over plain data, no I/O: an order with no previous event is compared with an
empty order, so on the first event everything in it counts as new.

Identity, as a template author would expect it:
- a **parcel** is a fulfillment with its tracking code; fulfillments of several items that
  share a tracking code are one parcel holding those items. A fulfillment without a tracking
  code is identified by its content (an untracked parcel seen again is not new);
- an **item** is identified by ``itemReferenceId`` (else ``id``, else its position).
Absence is not news: an item or parcel missing from an event (a package update naming one
parcel) is never reported as removed or cancelled; cancellation is read from statuses only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

CANCELLED_STATUSES = frozenset({"cancelled", "canceled"})
"""Item ``fulfillmentStatus`` values that mean the item will not be produced (both spellings
occur in the platform's data)."""

SHIPPED_STATUS = "shipped"

Record = dict[str, Any]


@dataclass(frozen=True)
class Changes:
    """The difference between an order's previous event and the current one.

    Every list holds fresh dicts (copies): a template may read them freely, and the event's own
    data is never shared with them.
    """

    first: bool
    previous_type: str | None
    previous_status: str | None
    status_changed: bool
    parcels: tuple[Record, ...]
    new_parcels: tuple[Record, ...]
    new_tracking: tuple[Record, ...]
    parcels_status_changed: tuple[Record, ...]
    new_items: tuple[Record, ...]
    items_shipped: tuple[Record, ...]
    items_cancelled: tuple[Record, ...]
    items_status_changed: tuple[Record, ...]

    def as_context(self) -> dict[str, Any]:
        """The ``changes`` template variable: JSON-ready, so ``| tojson`` works on any part."""
        return {
            "first": self.first,
            "previous_type": self.previous_type,
            "previous_status": self.previous_status,
            "status_changed": self.status_changed,
            "parcels": list(self.parcels),
            "new_parcels": list(self.new_parcels),
            "new_tracking": list(self.new_tracking),
            "parcels_status_changed": list(self.parcels_status_changed),
            "new_items": list(self.new_items),
            "items_shipped": list(self.items_shipped),
            "items_cancelled": list(self.items_cancelled),
            "items_status_changed": list(self.items_status_changed),
        }


def compute_changes(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> Changes:
    """Compare two event envelopes (``{"type": ..., "data": {...}}``) of the same order.

    `previous` is None for the order's first event. Malformed parts (an ``items`` that is not a
    list, a fulfillment that is not an object) are skipped, never an error: the payload of the
    current event must still render.
    """
    before = _data_of(previous)
    after = _data_of(current)
    old_parcels = {key: parcel for key, parcel in _parcels(before)}
    now_parcels = list(_parcels(after))
    old_items = {key: item for key, item in _items(before)}
    now_items = list(_items(after))

    new_parcels = [parcel for key, parcel in now_parcels if key not in old_parcels]
    old_tracking = {_tracking_of(parcel) for parcel in old_parcels.values()}
    new_tracking = [
        parcel
        for _, parcel in now_parcels
        if parcel.get("trackingCode") and _tracking_of(parcel) not in old_tracking
    ]
    parcels_status_changed = [
        {**parcel, "previousPackageStatus": old_parcels[key].get("packageStatus")}
        for key, parcel in now_parcels
        if key in old_parcels
        and parcel.get("packageStatus") != old_parcels[key].get("packageStatus")
    ]
    in_new_parcels = {key for parcel in new_parcels for key in parcel["itemKeys"]}

    new_items: list[Record] = []
    shipped: list[Record] = []
    cancelled: list[Record] = []
    status_changed_items: list[Record] = []
    for key, item in now_items:
        old = old_items.get(key)
        status = item.get("fulfillmentStatus")
        old_status = None if old is None else old.get("fulfillmentStatus")
        if old is None:
            new_items.append(item)
        if status != old_status:
            status_changed_items.append({**item, "previousFulfillmentStatus": old_status})
        if key in in_new_parcels or (status == SHIPPED_STATUS and old_status != SHIPPED_STATUS):
            shipped.append(item)
        if _is_cancelled(status) and not _is_cancelled(old_status):
            cancelled.append(item)

    previous_status = before.get("fulfillmentStatus")
    return Changes(
        first=previous is None,
        previous_type=_text_or_none(previous.get("type")) if previous is not None else None,
        previous_status=_text_or_none(previous_status),
        status_changed=after.get("fulfillmentStatus") != previous_status,
        parcels=tuple(_public(parcel) for _, parcel in now_parcels),
        new_parcels=tuple(_public(parcel) for parcel in new_parcels),
        new_tracking=tuple(_public(parcel) for parcel in new_tracking),
        parcels_status_changed=tuple(_public(parcel) for parcel in parcels_status_changed),
        new_items=tuple(new_items),
        items_shipped=tuple(shipped),
        items_cancelled=tuple(cancelled),
        items_status_changed=tuple(status_changed_items),
    )


def _data_of(envelope: Mapping[str, Any] | None) -> Mapping[str, Any]:
    data = None if envelope is None else envelope.get("data")
    return data if isinstance(data, Mapping) else {}


def _items(data: Mapping[str, Any]) -> Iterator[tuple[str, Record]]:
    """(key, item without its fulfillments) for each item object, keys made unique."""
    items = data.get("items")
    if not isinstance(items, list):
        return
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue
        key = _item_key(item, index)
        if key in seen:
            key = f"{key}#{index}"
        seen.add(key)
        yield key, {name: value for name, value in item.items() if name != "fulfillments"}


def _item_key(item: Mapping[str, Any], index: int) -> str:
    for name in ("itemReferenceId", "id"):
        value = item.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return f"{name}:{value}"
    return f"#{index}"


def _parcels(data: Mapping[str, Any]) -> Iterator[tuple[str, Record]]:
    """(key, parcel) in order of first appearance; a parcel lists the items it holds.

    A parcel is the fields of its first fulfillment plus ``items`` (the items in it, without
    their fulfillments); ``itemKeys`` is internal and removed by `_public`.
    """
    parcels: dict[str, Record] = {}
    for item_key, item, fulfillment in _fulfillments(data):
        key = _parcel_key(fulfillment)
        parcel = parcels.get(key)
        if parcel is None:
            parcel = parcels[key] = {**fulfillment, "items": [], "itemKeys": []}
        if item_key not in parcel["itemKeys"]:
            parcel["itemKeys"].append(item_key)
            parcel["items"].append(item)
    yield from parcels.items()


def _fulfillments(data: Mapping[str, Any]) -> Iterator[tuple[str, Record, Mapping[str, Any]]]:
    raw_items = data.get("items")
    if not isinstance(raw_items, list):
        return
    keyed = dict(_items(data))
    keys = iter(keyed)
    for raw in raw_items:
        if not isinstance(raw, Mapping):
            continue
        item_key = next(keys)
        fulfillments = raw.get("fulfillments")
        if not isinstance(fulfillments, list):
            continue
        for fulfillment in fulfillments:
            if isinstance(fulfillment, Mapping):
                yield item_key, keyed[item_key], fulfillment


def _parcel_key(fulfillment: Mapping[str, Any]) -> str:
    code = fulfillment.get("trackingCode")
    if isinstance(code, str | int) and not isinstance(code, bool) and str(code):
        return f"tracking:{code}"
    content = {k: v for k, v in fulfillment.items() if k != "packageStatus"}
    return "untracked:" + json.dumps(content, sort_keys=True, default=str)


def _tracking_of(parcel: Mapping[str, Any]) -> tuple[str, str]:
    return (str(parcel.get("trackingCode") or ""), str(parcel.get("trackingUrl") or ""))


def _public(parcel: Record) -> Record:
    return {name: value for name, value in parcel.items() if name != "itemKeys"}


def _is_cancelled(status: Any) -> bool:
    return isinstance(status, str) and status.casefold() in CANCELLED_STATUSES


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
