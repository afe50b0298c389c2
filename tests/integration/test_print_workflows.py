"""Print workflows through a real daemon: a partial shipment in two events, the second postback
about the new parcel only (the first event read back from the spool), in the industry formats
a receiver gets over HTTP."""

from __future__ import annotations

import copy
import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from postbackd.samples import load_sample
from postbackd.testing import PostbackdDaemon, WebhookReceiver


def partial_shipment() -> tuple[dict[str, Any], dict[str, Any]]:
    """The shipped sample as two shipments of one order: item 1's parcels, then item 2's."""
    second = load_sample("order.shipped")
    second["id"] = "evt-second-shipment"
    first = copy.deepcopy(second)
    first["id"] = "evt-first-shipment"
    first["data"]["fulfillmentStatus"] = "partially_shipped"
    first["data"]["items"][1]["fulfillmentStatus"] = "in_production"
    first["data"]["items"][1]["fulfillments"] = []
    return first, second


def csv_tracking(body: bytes) -> list[tuple[str, str]]:
    header, *rows = csv.reader(io.StringIO(body.decode(), newline=""), strict=True)
    return [
        (row[header.index("tracking_code")], row[header.index("item_reference")]) for row in rows
    ]


def cxml_tracking(body: bytes) -> list[str | None]:
    request = ET.fromstring(body).find("Request/ShipNoticeRequest")
    assert request is not None
    return [control.findtext("ShipmentIdentifier") for control in request.findall("ShipControl")]


async def test_the_second_partial_shipment_postback_carries_only_the_new_parcel(
    webhook_receiver: WebhookReceiver, postbackd_daemon: Callable[..., PostbackdDaemon]
) -> None:
    daemon = postbackd_daemon(
        triggers=[
            {
                "name": "acme-shipment-csv",
                "events": ["order.shipped"],
                "template": "builtin:shipment-csv",
                "delivery": "webhook",
                "options": {"url": webhook_receiver.url("/shipments.csv")},
            },
            {
                "name": "acme-ship-notice",
                "events": ["Order shipped"],
                "template": "builtin:cxml-ship-notice",
                "delivery": "webhook",
                "options": {"url": webhook_receiver.url("/cxml")},
            },
            {
                "name": "acme-status",
                "events": ["order.*"],
                "template": "builtin:gelato-status-v2",
                "delivery": "webhook",
                "options": {"url": webhook_receiver.url("/status")},
            },
        ]
    )
    await daemon.start()
    first, second = partial_shipment()
    await daemon.submit(first)
    await webhook_receiver.wait_for(1, path="/shipments.csv")
    await daemon.submit(second)

    csv_requests = await webhook_receiver.wait_for(2, path="/shipments.csv")
    assert csv_requests[0].headers["Content-Type"].startswith("text/csv")
    assert csv_tracking(csv_requests[0].body) == [
        ("1234567890", "ACME-100234-1"),
        ("1234567891", "ACME-100234-1"),
    ]
    assert csv_tracking(csv_requests[1].body) == [
        ("1Z999AA10123456784", "ACME-100234-2"),
        ("1Z999AA10123456795", "ACME-100234-2"),
    ]

    notices = await webhook_receiver.wait_for(2, path="/cxml")
    bodies = sorted((r.body for r in notices), key=lambda body: b"evt-second" in body)
    assert cxml_tracking(bodies[0]) == ["1234567890", "1234567891"]
    assert cxml_tracking(bodies[1]) == ["1Z999AA10123456784", "1Z999AA10123456795"]

    statuses = [r.json() for r in await webhook_receiver.wait_for(2, path="/status")]
    last = next(s for s in statuses if len(s["trackings"]) == 4)
    assert [i["status"] for i in last["items"]] == ["shipped", "shipped"]
    finished = await daemon.wait_for_deliveries(6)
    assert {d["state"] for d in finished} == {"done"}
