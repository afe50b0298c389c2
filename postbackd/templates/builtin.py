"""Templates a trigger can name without writing one (``template = "builtin:..."``).

They are ordinary templates — the same engine, escaping and checks as configured ones — and
double as examples: optional fields go through ``| default(...)`` so an event without them
renders cleanly, while a missing ``orderId`` is still reported as a warning.
"""

from __future__ import annotations

from pathlib import Path

from postbackd.config import Location, TemplateConfig, TemplateFormat

BUILTIN_PREFIX = "builtin:"

_ORDER_STATUS_JSON = """\
{
  "event": {{ event.type | tojson }},
  "eventId": {{ event.id | tojson }},
  "time": {{ event.time | tojson }},
  "customer": {{ event.customer | tojson }},
  "orderId": {{ orderId | tojson }},
  "orderReferenceId": {{ orderReferenceId | default(none) | tojson }},
  "status": {{ fulfillmentStatus | default(none) | tojson }},
{%- if failureReason is defined or failureReasons is defined %}
  "failureReason": {{ failureReason | default(none) | tojson }},
  "failureReasons": {{ failureReasons | default([]) | tojson }},
{%- endif %}
  "items": [
{%- for item in items | default([]) %}
    {
      "itemReferenceId": {{ item.itemReferenceId | default(none) | tojson }},
      "status": {{ item.fulfillmentStatus | default(none) | tojson }},
      "fulfillments": [
{%- for f in item.fulfillments | default([]) %}
        {
          "trackingCode": {{ f.trackingCode | default(none) | tojson }},
          "trackingUrl": {{ f.trackingUrl | default(none) | tojson }},
          "carrier": {{ f.carrierName | default(none) | tojson }},
          "carrierUid": {{ f.carrierUid | default(none) | tojson }},
          "shipmentMethod": {{ lookups({"shipmentMethodUid": f.shipmentMethodUid | default("")},
                                       default=f.shipmentMethodName | default(none)) | tojson }},
          "shipmentMethodUid": {{ f.shipmentMethodUid | default(none) | tojson }},
          "fulfillmentCountry": {{ f.fulfillmentCountry | default(none) | tojson }}
        }{% if not loop.last %},{% endif %}
{%- endfor %}
      ]
    }{% if not loop.last %},{% endif %}
{%- endfor %}
  ]
}
"""

_ORDER_STATUS_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<orderStatus event="{{ event.type }}" eventId="{{ event.id }}" time="{{ event.time }}" \
customer="{{ event.customer }}">
  <orderId>{{ orderId }}</orderId>
  <orderReferenceId>{{ orderReferenceId | default("") }}</orderReferenceId>
  <status>{{ fulfillmentStatus | default("") }}</status>
{%- if failureReason is defined %}
  <failureReason>{{ failureReason }}</failureReason>
{%- endif %}
{%- if failureReasons is defined %}
  <failureReasons>
{%- for reason in failureReasons %}
{%- if reason is mapping %}
    <reason code="{{ reason.code | default('') }}" \
itemReferenceId="{{ reason.itemReferenceId | default('') }}">\
{{ reason.message | default("") }}</reason>
{%- else %}
    <reason>{{ reason }}</reason>
{%- endif %}
{%- endfor %}
  </failureReasons>
{%- endif %}
  <items>
{%- for item in items | default([]) %}
    <item itemReferenceId="{{ item.itemReferenceId | default('') }}" \
status="{{ item.fulfillmentStatus | default('') }}">
{%- for f in item.fulfillments | default([]) %}
      <fulfillment>
        <trackingCode>{{ f.trackingCode | default("") }}</trackingCode>
        <trackingUrl>{{ f.trackingUrl | default("") }}</trackingUrl>
        <carrier uid="{{ f.carrierUid | default('') }}">{{ f.carrierName | default("") }}</carrier>
        <shipmentMethod uid="{{ f.shipmentMethodUid | default('') }}">\
{{ lookups({"shipmentMethodUid": f.shipmentMethodUid | default("")},
           default=f.shipmentMethodName | default("")) }}</shipmentMethod>
        <fulfillmentCountry>{{ f.fulfillmentCountry | default("") }}</fulfillmentCountry>
      </fulfillment>
{%- endfor %}
    </item>
{%- endfor %}
  </items>
</orderStatus>
"""

_SHIPPED_EMAIL_SUBJECT = "Your order {{ orderReferenceId }} has shipped"

_SHIPPED_EMAIL_HTML = """\
<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>Your order {{ orderReferenceId }} has shipped</title></head>
<body>
<p>Hello,</p>
<p>Good news: your order <strong>{{ orderReferenceId }}</strong> is on its way.</p>
{%- set ns = namespace(parcels=[], seen=[]) %}
{%- for item in items | default([]) %}{% for f in item.fulfillments | default([]) %}
{%- if f.trackingCode | default("") and f.trackingCode not in ns.seen %}
{%- set ns.seen = ns.seen + [f.trackingCode] %}{% set ns.parcels = ns.parcels + [f] %}
{%- endif %}
{%- endfor %}{% endfor %}
{%- if ns.parcels %}
<p>You can follow {{ "your parcel" if ns.parcels | length == 1 else "your parcels" }} here:</p>
<table>
<tr><th align="left">Shipped with</th><th align="left">Tracking number</th></tr>
{%- for f in ns.parcels %}
{%- set url = f.trackingUrl | default("", true) | string %}
<tr><td>{{ lookups({"shipmentMethodUid": f.shipmentMethodUid | default("")},
                   default=f.shipmentMethodName | default(f.carrierName | default(""))) }}</td>
<td>{% if url.startswith(("https://", "http://")) %}<a href="{{ url }}">{{ f.trackingCode }}</a>\
{% else %}{{ f.trackingCode }}{% endif %}</td></tr>
{%- endfor %}
</table>
{%- endif %}
<p>Thank you for your order{% if customer.name %},<br>{{ customer.name }}{% endif %}</p>
</body>
</html>
"""

_GELATO_STATUS_V2 = """\
{#- The body of the order platform's POST /v2/order/status: our event types mapped to its
    statuses, every parcel's tracking (trackingCode/trackingLink: the first parcel's, for
    receivers that read one) and each item's own status. An order.cancelled event that leaves
    some items standing is a partial cancellation: the order keeps the status of its own
    fulfillmentStatus, the cancelled items say "cancelled". -#}
{%- set statuses = {
    "order.received": ("received", "Order received"),
    "order.failed": ("error", "Order failed"),
    "order.in_production": ("printed", "Order printed"),
    "order.shipped": ("shipped", "Order shipped"),
    "order.in_transit": ("shipped", "Order in transit"),
    "order.delivered": ("shipped", "Order delivered"),
    "order.package_status_updated": ("shipped", "Package status updated"),
    "order.cancelled": ("cancelled", "Order cancelled"),
    "order.returned": ("cancelled", "Order returned"),
} %}
{%- set by_fulfillment_status = {
    "created": "received", "pending": "received", "received": "received", "passed": "received",
    "failed": "error", "error": "error",
    "in_production": "printed", "printed": "printed", "produced": "printed",
    "shipped": "shipped", "in_transit": "shipped", "delivered": "shipped",
    "canceled": "cancelled", "cancelled": "cancelled", "returned": "cancelled",
} %}
{%- set order_status = by_fulfillment_status.get(fulfillmentStatus | default("") | lower) %}
{%- set ns = namespace(codes=[], parcels=[], reasons=[], standing=[], cancelled=[]) %}
{%- for item in items | default([]) %}
{%- set item_status = item.fulfillmentStatus | default("") | lower %}
{%- if by_fulfillment_status.get(item_status) == "cancelled" %}
{%- set ns.cancelled = ns.cancelled + [item.itemReferenceId | default("")] %}
{%- else %}{% set ns.standing = ns.standing + [item] %}{% endif %}
{%- for f in item.fulfillments | default([]) %}
{%- if f.trackingCode | default("") and f.trackingCode not in ns.codes %}
{%- set ns.codes = ns.codes + [f.trackingCode] %}{% set ns.parcels = ns.parcels + [f] %}
{%- endif %}
{%- endfor %}{% endfor %}
{%- for reason in failureReasons | default([]) %}
{%- set ns.reasons = ns.reasons + [reason.message | default("") if reason is mapping else reason] %}
{%- endfor %}
{%- if event.type == "order.delayed" %}
{%- set status = order_status or "received" %}
{%- set description = "Order delayed" ~ (": " ~ delay.reason if delay is defined and delay.reason
    is defined else "") ~ ("; expected to ship " ~ delay.expectedShipDate if delay is defined
    and delay.expectedShipDate is defined else "") %}
{%- elif event.type == "order.cancelled" and ns.cancelled and ns.standing %}
{%- set status = order_status if order_status and order_status != "cancelled" else "received" %}
{%- set description = "Items cancelled: " ~ ns.cancelled | join(", ") %}
{%- elif event.type in statuses %}
{%- set status, description = statuses[event.type] %}
{%- if event.type == "order.package_status_updated" and package is defined
      and package.statusDescription is defined %}
{%- set description = package.statusDescription %}
{%- endif %}
{%- else %}
{{- fail("builtin:gelato-status-v2 has no status for event type " ~ event.type
         ~ ": it maps only " ~ (statuses.keys() | list + ["order.delayed"]) | sort | join(", ")
         ~ "; limit the trigger's events to those") }}
{%- endif -%}
{
  "timestamp": {{ event.time | tojson }},
  "orderId": {{ orderId | tojson }},
  "status": {{ status | tojson }},
  "message": {{ (failureReason | default("") or ns.reasons | join("; ") or description) | tojson }},
{%- set first = ns.parcels[0] if ns.parcels else {} %}
  "trackingCode": {{ first.trackingCode | default(none) | tojson }},
  "trackingLink": {{ first.trackingUrl | default(none) | tojson }},
  "trackings": [
{%- for f in ns.parcels %}
{%- set held = namespace(refs=[]) %}
{%- for item in items %}
{%- if f.trackingCode in item.fulfillments | default([]) | map(attribute="trackingCode") | list %}
{%- set held.refs = held.refs + [item.itemReferenceId | default(none)] %}
{%- endif %}
{%- endfor %}
    {
      "trackingCode": {{ f.trackingCode | tojson }},
      "trackingLink": {{ f.trackingUrl | default(none) | tojson }},
      "carrier": {{ f.carrierName | default(none) | tojson }},
      "itemReferenceIds": {{ held.refs | tojson }}
    }{% if not loop.last %},{% endif %}
{%- endfor %}
  ],
  "items": [
{%- for item in items | default([]) %}
    {
      "itemReferenceId": {{ item.itemReferenceId | default(none) | tojson }},
      "status": {{ by_fulfillment_status.get(item.fulfillmentStatus | default("") | lower, status)
                   | tojson }},
      "trackingCodes": {{ item.fulfillments | default([]) | map(attribute="trackingCode")
                          | select | unique | list | tojson }}
    }{% if not loop.last %},{% endif %}
{%- endfor %}
  ]
}
"""

# The operational alerts (postbackd.* events, `postbackd.alerts`): their data is the same shape
# for every type — alert, status (firing | resolved), summary, episode, since, node, details.
_ALERT_JSON = """\
{
  "alert": {{ alert | tojson }},
  "type": {{ event.type | tojson }},
  "status": {{ status | tojson }},
  "summary": {{ summary | tojson }},
  "eventId": {{ event.id | tojson }},
  "episode": {{ episode | tojson }},
  "time": {{ event.time | tojson }},
  "since": {{ since | tojson }},
  "node": {{ node | tojson }},
  "details": {{ details | tojson }}
}
"""

_ALERT_EMAIL_SUBJECT = "[postbackd {{ node }}] {{ summary }}"

_ALERT_EMAIL_TEXT = """\
{%- set advice = {
    "destination_failing": "Its postbacks wait behind the circuit breaker and go out once it "
        ~ "answers again; nothing is lost. Check the receiver, or its URL in the trigger.",
    "destination_recovered": "The postbacks that waited are going out now.",
    "delivery_dead": "These postbacks will not be retried. Fix the cause, then send them "
        ~ "again: postbackd queue retry ID ...",
    "reload_rejected": "The running configuration stays in force. Fix the files named above; "
        ~ "postbackd check shows every error.",
    "source_down": "Events from this source are not being received. See /readyz and the log.",
    "source_recovered": "Events from this source are received again.",
} -%}
{{ summary }}

Alert:    {{ event.type }} ({{ status }})
Node:     {{ node }}
Since:    {{ since }}
Event id: {{ event.id }}
{% for key, value in details | dictsort %}
{%- if key == "deliveries" %}
deliveries:
{%- for d in value %}
  - {{ d.deliveryId }}: trigger {{ d.trigger }}, customer {{ d.customer }}, \
event {{ d.eventId }}{% if d.orderId %}, order {{ d.orderId }}{% endif %}
    {{ d.error | default("", true) }}
{%- endfor %}
{%- elif value is sequence and value is not string %}
{{ key }}:
{%- for item in value %}
  - {{ item }}
{%- endfor %}
{%- else %}
{{ key }}: {{ "-" if value is none else value }}
{%- endif %}
{%- endfor %}

{{ advice.get(alert, "") }}
"""


_CXML_SHIP_NOTICE = """\
{#- A cXML 1.2 ShipNoticeRequest (advance ship notice) for the parcels that left with this event
    (changes.new_parcels): one ShipControl per parcel (carrier, tracking number), one
    ShipNoticeItem per item in them, lineNumber its position in the order. From, To and Sender
    identities come from the customer's "cxmlIdentity" lookup ("from", "to"), else postbackd
    and the customer id. An event that shipped nothing new is a render error, not an empty
    notice. -#}
{%- if not changes.new_parcels %}
{{- fail("builtin:cxml-ship-notice: no new parcel in this " ~ event.type ~ " event of order "
         ~ orderReferenceId | default(orderId) ~ "; send it on order.shipped") }}
{%- endif %}
{%- set sender = lookups({"cxmlIdentity": "from"}, default="postbackd") %}
{%- set buyer = lookups({"cxmlIdentity": "to"}, default=customer.id) %}
{%- set ns = namespace(refs=[]) %}
{%- for parcel in changes.new_parcels %}{% for held in parcel["items"] %}
{%- if held.itemReferenceId | default("") not in ns.refs %}
{%- set ns.refs = ns.refs + [held.itemReferenceId | default("")] %}{% endif %}
{%- endfor %}{% endfor -%}
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.014/Fulfill.dtd">
<cXML payloadID="{{ event.id }}@postbackd" timestamp="{{ event.time }}" xml:lang="en-US">
  <Header>
    <From><Credential domain="NetworkID"><Identity>{{ sender }}</Identity></Credential></From>
    <To><Credential domain="NetworkID"><Identity>{{ buyer }}</Identity></Credential></To>
    <Sender>
      <Credential domain="NetworkID"><Identity>{{ sender }}</Identity></Credential>
      <UserAgent>postbackd</UserAgent>
    </Sender>
  </Header>
  <Request deploymentMode="production">
    <ShipNoticeRequest>
      <ShipNoticeHeader shipmentID="{{ event.id }}" operation="new" \
noticeDate="{{ event.time }}" shipmentDate="{{ event.time }}"/>
{%- for parcel in changes.new_parcels %}
      <ShipControl>
        <CarrierIdentifier domain="companyName">\
{{ parcel.carrierName | default(parcel.carrierUid | default("")) }}</CarrierIdentifier>
        <ShipmentIdentifier>{{ parcel.trackingCode | default("") }}</ShipmentIdentifier>
      </ShipControl>
{%- endfor %}
      <ShipNoticePortion>
        <OrderReference orderID="{{ orderReferenceId | default(orderId) }}" \
orderDate="{{ created | default(event.time) }}">
          <DocumentReference payloadID="{{ orderId }}"/>
        </OrderReference>
{%- for item in items | default([]) %}
{%- if item.itemReferenceId | default("") in ns.refs %}
        <ShipNoticeItem lineNumber="{{ loop.index }}" quantity="{{ item.quantity | default(1) }}">
          <ItemID>
            <SupplierPartID>{{ item.productUid | default("") }}</SupplierPartID>
            <SupplierPartAuxiliaryID>{{ item.itemReferenceId | default("") }}\
</SupplierPartAuxiliaryID>
          </ItemID>
          <UnitOfMeasure>EA</UnitOfMeasure>
        </ShipNoticeItem>
{%- endif %}
{%- endfor %}
      </ShipNoticePortion>
    </ShipNoticeRequest>
  </Request>
</cXML>
"""

_SHIPMENT_CSV = """\
{#- One row per item in each parcel that left with this event (changes.new_parcels), under a
    header row: the shape 3PL and ERP shipment imports read. No new parcel: the header alone. -#}
order_id,order_reference,item_reference,product_uid,quantity,tracking_code,tracking_url,\
carrier,shipment_method,country,shipped_at
{% for parcel in changes.new_parcels %}{% for held in parcel["items"] -%}
{{ orderId }},{{ orderReferenceId | default("") }},{{ held.itemReferenceId | default("") }},\
{{ held.productUid | default("") }},{{ held.quantity | default("") }},\
{{ parcel.trackingCode | default("") }},{{ parcel.trackingUrl | default("") }},\
{{ parcel.carrierName | default("") }},\
{{ lookups({"shipmentMethodUid": parcel.shipmentMethodUid | default("")},
           default=parcel.shipmentMethodName | default("")) }},\
{{ parcel.fulfillmentCountry | default("") }},{{ event.time }}
{% endfor %}{% endfor -%}
"""


def _builtin(
    name: str, format: TemplateFormat, body: str, subject: str | None = None
) -> TemplateConfig:
    return TemplateConfig(
        name=BUILTIN_PREFIX + name,
        format=format,
        body=body,
        location=Location(Path("<builtin>")),
        subject=subject,
    )


BUILTIN_TEMPLATES: dict[str, TemplateConfig] = {
    template.name: template
    for template in (
        _builtin("order-status-json", "json", _ORDER_STATUS_JSON),
        _builtin("order-status-xml", "xml", _ORDER_STATUS_XML),
        _builtin("shipped-email", "html", _SHIPPED_EMAIL_HTML, _SHIPPED_EMAIL_SUBJECT),
        _builtin("gelato-status-v2", "json", _GELATO_STATUS_V2),
        _builtin("alert-json", "json", _ALERT_JSON),
        _builtin("alert-email", "text", _ALERT_EMAIL_TEXT, _ALERT_EMAIL_SUBJECT),
        _builtin("cxml-ship-notice", "xml", _CXML_SHIP_NOTICE),
        _builtin("shipment-csv", "csv", _SHIPMENT_CSV),
    )
}
