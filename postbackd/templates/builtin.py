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
    statuses; tracking from the first fulfillment that has a tracking code. -#}
{%- set statuses = {
    "order.received": ("received", "Order received"),
    "order.failed": ("error", "Order failed"),
    "order.in_production": ("printed", "Order printed"),
    "order.shipped": ("shipped", "Order shipped"),
    "order.in_transit": ("shipped", "Order in transit"),
    "order.delivered": ("shipped", "Order delivered"),
    "order.cancelled": ("cancelled", "Order cancelled"),
    "order.returned": ("cancelled", "Order returned"),
} %}
{%- if event.type not in statuses %}
{{- fail("builtin:gelato-status-v2 has no status for event type " ~ event.type
         ~ ": it maps only " ~ statuses.keys() | sort | join(", ")
         ~ "; limit the trigger's events to those") }}
{%- endif %}
{%- set ns = namespace(tracking=none, reasons=[]) %}
{%- for item in items | default([]) %}{% for f in item.fulfillments | default([]) %}
{%- if ns.tracking is none and f.trackingCode | default("") %}{% set ns.tracking = f %}{% endif %}
{%- endfor %}{% endfor %}
{%- for reason in failureReasons | default([]) %}
{%- set ns.reasons = ns.reasons + [reason.message | default("") if reason is mapping else reason] %}
{%- endfor %}
{%- set status, description = statuses[event.type] -%}
{
  "timestamp": {{ event.time | tojson }},
  "orderId": {{ orderId | tojson }},
  "status": {{ status | tojson }},
  "message": {{ (failureReason | default("") or ns.reasons | join("; ") or description) | tojson }},
  "trackingCode": {{ (ns.tracking.trackingCode if ns.tracking else none) | tojson }},
  "trackingLink": {{ (ns.tracking.trackingUrl | default(none) if ns.tracking else none) | tojson }}
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
    )
}
