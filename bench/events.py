"""The events the load generator posts: realistic order-shipped envelopes, one per customer in turn.

`postedAt` (seconds since the epoch, set when the batch is sent) is rendered into the payload
by the bench template, so the receiver can measure post → receipt latency.
"""

from __future__ import annotations

from typing import Any

EVENT_TYPES = ("order.in_production", "order.shipped", "order.in_transit", "order.delivered")


def customer_id(index: int) -> str:
    return f"cust{index:05d}"


def make_event(prefix: str, index: int, customers: int, posted_at: float) -> dict[str, Any]:
    order = f"{prefix}-o{index}"
    return {
        "id": f"{prefix}-{index}",
        "type": EVENT_TYPES[index % len(EVENT_TYPES)],
        "customer": customer_id(index % customers),
        "data": {
            "orderId": order,
            "orderReferenceId": f"REF-{index:08d}",
            "fulfillmentStatus": "shipped",
            "postedAt": posted_at,
            "items": [
                {
                    "itemReferenceId": f"{order}-1",
                    "fulfillmentStatus": "shipped",
                    "fulfillments": [
                        {
                            "trackingCode": f"1Z999AA1{index:010d}",
                            "trackingUrl": f"https://track.example.com/{index}",
                            "carrierName": "UPS",
                            "carrierUid": "ups",
                            "shipmentMethodUid": "ups_std_uid",
                            "fulfillmentCountry": "DE",
                        }
                    ],
                }
            ],
        },
    }
