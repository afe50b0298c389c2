"""The built-in templates: valid output for every sample, the right fields, safe with odd data."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from postbackd.config.model import Customer, Location, Lookup
from postbackd.events import Event, parse_event
from postbackd.samples import load_sample, sample_event, sample_types
from postbackd.templates.builtin import BUILTIN_TEMPLATES
from postbackd.templates.engine import RenderError, TemplateEngine

HERE = Location(Path("conf.d/acme.toml"), 1)
ACME = Customer("acme", "Acme Prints", HERE)
HOSTILE = 'Ref "7" <b>&amp;</b> \\ \n\tend'


@pytest.fixture
def engine() -> TemplateEngine:
    carriers = Lookup("carriers", "shipmentMethodUid", {"dhl_express_uid": "DHL Express"}, HERE)
    return TemplateEngine({}, {"carriers": carriers})


def with_data(event_type: str, **changes: Any) -> Event:
    raw = load_sample(event_type)
    raw["data"].update(changes)
    return parse_event(raw)


ALERT_TEMPLATES = ("builtin:alert-email", "builtin:alert-json")
PAIRS = [
    (event_type, name)
    for event_type in sample_types()
    for name in sorted(BUILTIN_TEMPLATES)
    # the alert templates are for the postbackd.* events, the others for the orders'
    if (name in ALERT_TEMPLATES) == event_type.startswith("postbackd.")
]


@pytest.mark.parametrize(("event_type", "name"), PAIRS)
def test_every_builtin_renders_every_sample_of_its_kind_cleanly(
    engine: TemplateEngine, name: str, event_type: str
) -> None:
    event = sample_event(event_type)
    if name == "builtin:cxml-ship-notice" and not any(
        item["fulfillments"] for item in event.data["items"]
    ):
        with pytest.raises(RenderError, match="no new parcel in this"):
            engine.render(name, event, ACME)
        return
    rendered = engine.render(name, event, ACME)
    assert rendered.warnings == ()
    if rendered.format == "json":
        json.loads(rendered.body)
    elif rendered.format == "xml":
        ET.fromstring(rendered.body)


def test_builtins_are_named_with_the_prefix_and_located_as_builtin() -> None:
    assert set(BUILTIN_TEMPLATES) == {
        "builtin:order-status-json",
        "builtin:order-status-xml",
        "builtin:shipped-email",
        "builtin:gelato-status-v2",
        "builtin:alert-email",
        "builtin:alert-json",
        "builtin:cxml-ship-notice",
        "builtin:shipment-csv",
    }
    for name, config in BUILTIN_TEMPLATES.items():
        assert config.name == name
        assert str(config.location) == "<builtin>"


def test_order_status_json_carries_the_order_and_its_tracking(engine: TemplateEngine) -> None:
    body = json.loads(
        engine.render("builtin:order-status-json", sample_event("order.shipped"), ACME).body
    )
    assert body["event"] == "order.shipped"
    assert body["eventId"] == "evt_01JDXQ9M3N5P7R1S4T6V8W2X4Y"
    assert body["time"] == "2026-11-28T10:00:00Z"
    assert body["orderId"] == "4c1f7a2e-8d3b-4e6a-9b0f-2a7d5c3e1b90"
    assert body["orderReferenceId"] == "ACME-100234"
    assert body["status"] == "shipped"
    assert "failureReason" not in body
    assert [item["itemReferenceId"] for item in body["items"]] == ["ACME-100234-1", "ACME-100234-2"]
    assert [len(item["fulfillments"]) for item in body["items"]] == [2, 2]
    first = body["items"][0]["fulfillments"][0]
    assert first["trackingCode"] == "1234567890"
    assert first["carrier"] == "DHL"
    assert first["shipmentMethod"] == "DHL Express"  # from the lookup table
    assert body["items"][1]["fulfillments"][0]["shipmentMethod"] == "UPS Standard"


def test_order_status_json_carries_failure_reasons(engine: TemplateEngine) -> None:
    body = json.loads(
        engine.render("builtin:order-status-json", sample_event("order.failed"), ACME).body
    )
    assert body["failureReason"] == "Print file could not be downloaded"
    assert body["failureReasons"][0]["code"] == "file_download_failed"
    assert body["items"][0]["fulfillments"] == []


def test_order_status_xml_carries_the_same(engine: TemplateEngine) -> None:
    root = ET.fromstring(
        engine.render("builtin:order-status-xml", sample_event("order.shipped"), ACME).body
    )
    assert root.tag == "orderStatus"
    assert root.get("event") == "order.shipped"
    assert root.findtext("orderReferenceId") == "ACME-100234"
    items = root.findall("items/item")
    assert [item.get("itemReferenceId") for item in items] == ["ACME-100234-1", "ACME-100234-2"]
    assert [len(item.findall("fulfillment")) for item in items] == [2, 2]
    fulfillment = items[0].find("fulfillment")
    assert fulfillment is not None
    assert fulfillment.findtext("trackingCode") == "1234567890"
    carrier = fulfillment.find("carrier")
    assert carrier is not None and carrier.get("uid") == "dhl" and carrier.text == "DHL"
    assert fulfillment.findtext("shipmentMethod") == "DHL Express"

    failed = ET.fromstring(
        engine.render("builtin:order-status-xml", sample_event("order.failed"), ACME).body
    )
    reason = failed.find("failureReasons/reason")
    assert reason is not None and reason.get("code") == "file_download_failed"


@pytest.mark.parametrize("name", ["builtin:order-status-json", "builtin:order-status-xml"])
def test_hostile_values_do_not_break_the_builtins(engine: TemplateEngine, name: str) -> None:
    event = with_data("order.shipped", orderReferenceId=HOSTILE)
    rendered = engine.render(name, event, ACME)
    if rendered.format == "json":
        assert json.loads(rendered.body)["orderReferenceId"] == HOSTILE
    else:
        assert ET.fromstring(rendered.body).findtext("orderReferenceId") == HOSTILE


def test_shipped_email_has_subject_links_and_sign_off(engine: TemplateEngine) -> None:
    rendered = engine.render("builtin:shipped-email", sample_event("order.shipped"), ACME)
    assert rendered.format == "html"
    assert rendered.subject == "Your order ACME-100234 has shipped"
    html = rendered.body.decode()
    assert html.count("<a href=") == 4
    assert '<a href="https://www.ups.com/track?tracknum=1Z999AA10123456784">' in html
    assert "DHL Express" in html
    assert "Acme Prints" in html


def test_shipped_email_escapes_values_and_links_only_http(engine: TemplateEngine) -> None:
    raw = load_sample("order.shipped")
    fulfillment = raw["data"]["items"][0]["fulfillments"][0]
    fulfillment["trackingUrl"] = "javascript:alert(1)"
    fulfillment["trackingCode"] = "<script>x</script>"
    raw["data"]["orderReferenceId"] = "A&B\r\nBcc: x@example.com"
    rendered = engine.render("builtin:shipped-email", parse_event(raw), ACME)
    html = rendered.body.decode()
    assert "javascript:" not in html
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert rendered.subject == "Your order A&B Bcc: x@example.com has shipped"


def test_shipped_email_lists_a_parcel_once(engine: TemplateEngine) -> None:
    raw = load_sample("order.shipped")
    shared = raw["data"]["items"][0]["fulfillments"][0]
    for item in raw["data"]["items"]:
        item["fulfillments"] = [shared]
    html = engine.render("builtin:shipped-email", parse_event(raw), ACME).body.decode()
    assert html.count("<a href=") == 1
    assert "your parcel here" in html


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("order.received", "received"),
        ("order.failed", "error"),
        ("order.in_production", "printed"),
        ("order.shipped", "shipped"),
        ("order.in_transit", "shipped"),
        ("order.delivered", "shipped"),
        ("order.cancelled", "cancelled"),
        ("order.returned", "cancelled"),
    ],
)
def test_gelato_status_maps_event_types(engine: TemplateEngine, event_type: str, status: str):
    event = sample_event(event_type)
    body = json.loads(engine.render("builtin:gelato-status-v2", event, ACME).body)
    assert set(body) == {
        "timestamp",
        "orderId",
        "status",
        "message",
        "trackingCode",
        "trackingLink",
        "trackings",
        "items",
    }
    assert body["status"] == status
    assert body["timestamp"] == event.time
    assert body["orderId"] == event.data["orderId"]


def test_gelato_status_takes_tracking_from_the_first_fulfillment(engine: TemplateEngine) -> None:
    body = json.loads(
        engine.render("builtin:gelato-status-v2", sample_event("order.shipped"), ACME).body
    )
    assert body["trackingCode"] == "1234567890"
    assert body["trackingLink"].endswith("tracking-id=1234567890")
    assert body["message"] == "Order shipped"
    received = engine.render("builtin:gelato-status-v2", sample_event("order.received"), ACME)
    assert json.loads(received.body)["trackingCode"] is None


def test_gelato_status_skips_fulfillments_without_tracking(engine: TemplateEngine) -> None:
    raw = load_sample("order.shipped")
    raw["data"]["items"][0]["fulfillments"][0].pop("trackingCode")
    body = json.loads(engine.render("builtin:gelato-status-v2", parse_event(raw), ACME).body)
    assert body["trackingCode"] == "1234567891"


def test_gelato_status_message_is_the_failure_reason(engine: TemplateEngine) -> None:
    failed = json.loads(
        engine.render("builtin:gelato-status-v2", sample_event("order.failed"), ACME).body
    )
    assert failed["message"] == "Print file could not be downloaded"
    raw = load_sample("order.cancelled")
    del raw["data"]["failureReason"]
    cancelled = json.loads(engine.render("builtin:gelato-status-v2", parse_event(raw), ACME).body)
    assert cancelled["message"] == "Cancelled at the customer's request before production"


def test_gelato_status_sends_every_parcels_tracking(engine: TemplateEngine) -> None:
    body = json.loads(
        engine.render("builtin:gelato-status-v2", sample_event("order.shipped"), ACME).body
    )
    assert [t["trackingCode"] for t in body["trackings"]] == [
        "1234567890",
        "1234567891",
        "1Z999AA10123456784",
        "1Z999AA10123456795",
    ]
    assert body["trackings"][2]["itemReferenceIds"] == ["ACME-100234-2"]
    assert body["trackings"][2]["trackingLink"].endswith("tracknum=1Z999AA10123456784")


def test_gelato_status_reports_a_partial_cancellation_per_item(engine: TemplateEngine) -> None:
    raw = load_sample("order.cancelled")
    raw["data"]["fulfillmentStatus"] = "in_production"
    raw["data"]["items"].append(
        {
            "itemReferenceId": "ACME-100236-2",
            "fulfillmentStatus": "in_production",
            "fulfillments": [],
        }
    )
    del raw["data"]["failureReason"], raw["data"]["failureReasons"]
    body = json.loads(engine.render("builtin:gelato-status-v2", parse_event(raw), ACME).body)
    assert body["status"] == "printed"
    assert body["message"] == "Items cancelled: ACME-100236-1"
    assert [(i["itemReferenceId"], i["status"]) for i in body["items"]] == [
        ("ACME-100236-1", "cancelled"),
        ("ACME-100236-2", "printed"),
    ]
    whole = json.loads(
        engine.render("builtin:gelato-status-v2", sample_event("order.cancelled"), ACME).body
    )
    assert whole["status"] == "cancelled"


def test_gelato_status_of_package_and_delay_events(engine: TemplateEngine) -> None:
    package = json.loads(
        engine.render(
            "builtin:gelato-status-v2", sample_event("order.package_status_updated"), ACME
        ).body
    )
    assert package["status"] == "shipped"
    assert package["message"] == "The parcel is out for delivery with the courier"
    delayed = json.loads(
        engine.render("builtin:gelato-status-v2", sample_event("order.delayed"), ACME).body
    )
    assert delayed["status"] == "printed"
    assert delayed["message"].startswith("Order delayed: Paper stock")
    assert delayed["message"].endswith("expected to ship 2026-12-02")


def test_gelato_status_refuses_an_event_type_it_cannot_map(engine: TemplateEngine) -> None:
    raw = load_sample("order.shipped")
    raw["type"] = "label.printed"
    with pytest.raises(RenderError, match=r"no status for event type label\.printed"):
        engine.render("builtin:gelato-status-v2", parse_event(raw), ACME)


def test_gelato_status_names_the_event_types_it_maps_for_one_it_does_not(
    engine: TemplateEngine,
) -> None:
    raw = load_sample("order.shipped")
    raw["type"] = "order.on_hold"  # an order.* type, yet not one the platform has a status for
    with pytest.raises(RenderError) as raised:
        engine.render("builtin:gelato-status-v2", parse_event(raw), ACME)
    message = str(raised.value)
    assert "no status for event type order.on_hold" in message
    assert "order.* events only" not in message
    assert "it maps only order.cancelled, order.delayed, order.delivered" in message
    assert "limit the trigger's events to those" in message


def test_the_configuration_knows_every_builtin_by_name() -> None:
    from postbackd.config.load import BUILTIN_TEMPLATE_NAMES

    assert set(BUILTIN_TEMPLATES) == BUILTIN_TEMPLATE_NAMES
