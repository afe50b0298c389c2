"""The industry formats against their rules: a cXML 1.2 ShipNoticeRequest, a 3PL shipment CSV
and the platform's per-item status postback. Each is well-formed, has its required parts, and
reads back (ElementTree, the csv module, json) to the same parcels and items as the event."""

from __future__ import annotations

import copy
import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from postbackd.changes import compute_changes
from postbackd.config.model import Customer, Location, Lookup
from postbackd.events import Event, parse_event
from postbackd.samples import load_sample
from postbackd.templates.engine import RenderError, TemplateEngine

HERE = Location(Path("conf.d/acme.toml"), 1)
ACME = Customer("acme", "Acme Prints", HERE)
HOSTILE = 'Ref "7", <b>&amp;</b>\r\n\tend'
CSV_HEADER = [
    "order_id",
    "order_reference",
    "item_reference",
    "product_uid",
    "quantity",
    "tracking_code",
    "tracking_url",
    "carrier",
    "shipment_method",
    "country",
    "shipped_at",
]


@pytest.fixture
def engine() -> TemplateEngine:
    carriers = Lookup("carriers", "shipmentMethodUid", {"dhl_express_uid": "DHL Express"}, HERE)
    identities = Lookup(
        "acme-cxml", "cxmlIdentity", {"from": "AN01-PSP", "to": "AN02-ACME"}, HERE, "acme"
    )
    return TemplateEngine({}, {"carriers": carriers, "acme-cxml": identities})


def render(engine: TemplateEngine, name: str, event: Event, previous: Event | None = None) -> bytes:
    changes = compute_changes(
        None if previous is None else previous.to_dict(), event.to_dict()
    ).as_context()
    return engine.render(name, event, ACME, changes).body


def parcels_of(event: Event) -> dict[str, list[dict[str, Any]]]:
    """Tracking code → the items in that parcel, read straight from the event."""
    found: dict[str, list[dict[str, Any]]] = {}
    for item in event.data["items"]:
        for fulfillment in item["fulfillments"]:
            found.setdefault(fulfillment["trackingCode"], []).append(item)
    return found


def partial_shipment() -> tuple[Event, Event]:
    """The shipped sample as two shipments: item 1's parcels first, then item 2's."""
    second = load_sample("order.shipped")
    first = copy.deepcopy(second)
    first["id"] = "evt_first_shipment"
    first["data"]["fulfillmentStatus"] = "partially_shipped"
    first["data"]["items"][1]["fulfillmentStatus"] = "in_production"
    first["data"]["items"][1]["fulfillments"] = []
    return parse_event(first), parse_event(second)


def hostile_shipped() -> Event:
    raw = load_sample("order.shipped")
    raw["data"]["orderReferenceId"] = HOSTILE
    raw["data"]["items"][0]["itemReferenceId"] = HOSTILE
    raw["data"]["items"][0]["fulfillments"][0]["trackingCode"] = HOSTILE
    raw["data"]["items"][1]["fulfillments"][0]["carrierName"] = HOSTILE
    return parse_event(raw)


# ---------------------------------------------------------------- cXML ShipNoticeRequest


def ship_notice(body: bytes) -> ET.Element:
    assert b'<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.014/Fulfill.dtd">' in body
    root = ET.fromstring(body)
    assert root.tag == "cXML"
    for attribute in ("payloadID", "timestamp"):
        assert root.get(attribute)
    header = root.find("Header")
    assert header is not None
    for party in ("From", "To", "Sender"):
        assert header.findtext(f"{party}/Credential/Identity")
    request = root.find("Request/ShipNoticeRequest")
    assert request is not None
    children = [child.tag for child in request]
    assert children[0] == "ShipNoticeHeader"
    assert children[1:] == sorted(children[1:], key=["ShipControl", "ShipNoticePortion"].index)
    notice_header = request.find("ShipNoticeHeader")
    assert notice_header is not None
    assert notice_header.get("shipmentID") and notice_header.get("noticeDate")
    assert notice_header.get("operation") == "new"
    for control in request.findall("ShipControl"):
        assert control.findtext("CarrierIdentifier") is not None
        assert control.find("CarrierIdentifier").get("domain")  # type: ignore[union-attr]
        assert control.findtext("ShipmentIdentifier")
    portion = request.find("ShipNoticePortion")
    assert portion is not None
    reference = portion.find("OrderReference")
    assert reference is not None and reference.get("orderID")
    document = reference.find("DocumentReference")
    assert document is not None and document.get("payloadID")
    for line in portion.findall("ShipNoticeItem"):
        assert int(line.get("lineNumber", "0")) >= 1
        assert float(line.get("quantity", "0")) > 0
        assert line.findtext("UnitOfMeasure") == "EA"
    return request


def test_cxml_ship_notice_reads_back_to_the_events_parcels_and_items(
    engine: TemplateEngine,
) -> None:
    event = parse_event(load_sample("order.shipped"))
    request = ship_notice(render(engine, "builtin:cxml-ship-notice", event))
    tracking = [c.findtext("ShipmentIdentifier") for c in request.findall("ShipControl")]
    assert tracking == list(parcels_of(event))
    carriers = [c.findtext("CarrierIdentifier") for c in request.findall("ShipControl")]
    assert carriers == ["DHL", "DHL", "UPS", "UPS"]
    lines = [
        (
            line.get("lineNumber"),
            line.get("quantity"),
            line.findtext("ItemID/SupplierPartID"),
            line.findtext("ItemID/SupplierPartAuxiliaryID"),
        )
        for line in request.iter("ShipNoticeItem")
    ]
    assert lines == [
        (str(n), str(i["quantity"]), i["productUid"], i["itemReferenceId"])
        for n, i in enumerate(event.data["items"], 1)
    ]
    reference = request.find("ShipNoticePortion/OrderReference")
    assert reference is not None and reference.get("orderID") == "ACME-100234"


def test_cxml_identities_come_from_the_customers_lookup(engine: TemplateEngine) -> None:
    event = parse_event(load_sample("order.shipped"))
    root = ET.fromstring(render(engine, "builtin:cxml-ship-notice", event))
    assert root.findtext("Header/From/Credential/Identity") == "AN01-PSP"
    assert root.findtext("Header/To/Credential/Identity") == "AN02-ACME"
    other = TemplateEngine({}, {})
    plain = ET.fromstring(render(other, "builtin:cxml-ship-notice", event))
    assert plain.findtext("Header/From/Credential/Identity") == "postbackd"
    assert plain.findtext("Header/To/Credential/Identity") == "acme"


def test_cxml_second_partial_shipment_notices_only_the_new_parcels(
    engine: TemplateEngine,
) -> None:
    first, second = partial_shipment()
    request = ship_notice(render(engine, "builtin:cxml-ship-notice", second, first))
    tracking = [c.findtext("ShipmentIdentifier") for c in request.findall("ShipControl")]
    assert tracking == ["1Z999AA10123456784", "1Z999AA10123456795"]
    lines = [
        (line.get("lineNumber"), line.findtext("ItemID/SupplierPartAuxiliaryID"))
        for line in request.iter("ShipNoticeItem")
    ]
    assert lines == [("2", "ACME-100234-2")]


def test_cxml_without_a_new_parcel_is_a_render_error(engine: TemplateEngine) -> None:
    shipped = parse_event(load_sample("order.shipped"))
    with pytest.raises(RenderError, match=r"no new parcel in this order\.shipped event"):
        render(engine, "builtin:cxml-ship-notice", shipped, shipped)


def test_cxml_keeps_hostile_values_intact(engine: TemplateEngine) -> None:
    event = hostile_shipped()
    request = ship_notice(render(engine, "builtin:cxml-ship-notice", event))
    assert request.findtext("ShipControl/ShipmentIdentifier") == HOSTILE
    assert request.findall("ShipControl")[2].findtext("CarrierIdentifier") == HOSTILE
    assert request.findtext("ShipNoticePortion/ShipNoticeItem/ItemID/SupplierPartAuxiliaryID") == (
        HOSTILE
    )


# ---------------------------------------------------------------- shipment CSV


def shipment_rows(body: bytes) -> list[dict[str, str]]:
    text = body.decode("utf-8")
    assert text.endswith("\r\n")
    records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert records[0] == CSV_HEADER
    assert all(len(record) == len(CSV_HEADER) for record in records)
    return [dict(zip(CSV_HEADER, record, strict=True)) for record in records[1:]]


def test_shipment_csv_has_one_row_per_parcel_and_item(engine: TemplateEngine) -> None:
    event = parse_event(load_sample("order.shipped"))
    rows = shipment_rows(render(engine, "builtin:shipment-csv", event))
    expected = [
        (code, item["itemReferenceId"], item["productUid"], str(item["quantity"]))
        for code, held in parcels_of(event).items()
        for item in held
    ]
    assert [
        (r["tracking_code"], r["item_reference"], r["product_uid"], r["quantity"]) for r in rows
    ] == expected
    assert {r["order_id"] for r in rows} == {event.data["orderId"]}
    assert rows[0]["shipment_method"] == "DHL Express"  # through the carriers lookup
    assert rows[2]["shipment_method"] == "UPS Standard"  # the event's own name
    assert rows[0]["shipped_at"] == event.time


def test_shipment_csv_second_partial_shipment_lists_only_the_new_parcels(
    engine: TemplateEngine,
) -> None:
    first, second = partial_shipment()
    rows = shipment_rows(render(engine, "builtin:shipment-csv", second, first))
    assert [(r["tracking_code"], r["item_reference"]) for r in rows] == [
        ("1Z999AA10123456784", "ACME-100234-2"),
        ("1Z999AA10123456795", "ACME-100234-2"),
    ]
    assert shipment_rows(render(engine, "builtin:shipment-csv", second, second)) == []


def test_shipment_csv_quotes_hostile_values_so_they_read_back(engine: TemplateEngine) -> None:
    rows = shipment_rows(render(engine, "builtin:shipment-csv", hostile_shipped()))
    assert rows[0]["order_reference"] == HOSTILE
    assert rows[0]["item_reference"] == HOSTILE
    assert rows[0]["tracking_code"] == HOSTILE
    assert rows[2]["carrier"] == HOSTILE


# ---------------------------------------------------------------- per-item status postback

STATUSES = {"received", "error", "printed", "shipped", "cancelled"}


def item_status(body: bytes) -> dict[str, Any]:
    status = json.loads(body)
    assert {"timestamp", "orderId", "status", "message", "trackings", "items"} <= set(status)
    assert status["status"] in STATUSES
    for tracking in status["trackings"]:
        assert tracking["trackingCode"] and isinstance(tracking["itemReferenceIds"], list)
    for item in status["items"]:
        assert item["itemReferenceId"] and item["status"] in STATUSES
    return status


def test_item_status_reads_back_to_the_events_parcels_and_items(engine: TemplateEngine) -> None:
    event = parse_event(load_sample("order.shipped"))
    status = item_status(render(engine, "builtin:gelato-status-v2", event))
    assert {t["trackingCode"]: t["itemReferenceIds"] for t in status["trackings"]} == {
        code: [i["itemReferenceId"] for i in held] for code, held in parcels_of(event).items()
    }
    assert [(i["itemReferenceId"], i["trackingCodes"]) for i in status["items"]] == [
        (item["itemReferenceId"], [f["trackingCode"] for f in item["fulfillments"]])
        for item in event.data["items"]
    ]


def test_item_status_of_a_partial_shipment_says_which_items_left(engine: TemplateEngine) -> None:
    first, _ = partial_shipment()
    status = item_status(render(engine, "builtin:gelato-status-v2", first))
    assert [(i["itemReferenceId"], i["status"]) for i in status["items"]] == [
        ("ACME-100234-1", "shipped"),
        ("ACME-100234-2", "printed"),
    ]
    assert [t["trackingCode"] for t in status["trackings"]] == ["1234567890", "1234567891"]


def test_item_status_keeps_hostile_values_intact(engine: TemplateEngine) -> None:
    status = item_status(render(engine, "builtin:gelato-status-v2", hostile_shipped()))
    assert status["trackingCode"] == HOSTILE
    assert status["items"][0]["itemReferenceId"] == HOSTILE
    assert status["trackings"][0]["itemReferenceIds"] == [HOSTILE]
