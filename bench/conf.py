"""The configuration directory the benchmark daemon runs with, generated per scenario.

Every customer has one trigger (webhook or email) on every order event, rendered by a copy of
the built-in order-status JSON template with a `postedAt` field added for latency. All
webhooks go to the one receiver, i.e. one destination, so `per_destination` is raised to
`concurrency` (the default of 8 would be the cap, not the daemon).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.events import customer_id

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

_BODY = """\
{
  "event": {{ event.type | tojson }},
  "eventId": {{ event.id | tojson }},
  "time": {{ event.time | tojson }},
  "customer": {{ event.customer | tojson }},
  "orderId": {{ orderId | tojson }},
  "orderReferenceId": {{ orderReferenceId | default(none) | tojson }},
  "status": {{ fulfillmentStatus | default(none) | tojson }},
  "postedAt": {{ postedAt | default(none) | tojson }},
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
          "shipmentMethod": {{ lookups({"shipmentMethodUid": f.shipmentMethodUid | default("")},
                                       default=f.shipmentMethodName | default(none)) | tojson }},
          "fulfillmentCountry": {{ f.fulfillmentCountry | default(none) | tojson }}
        }{% if not loop.last %},{% endif %}
{%- endfor %}
      ]
    }{% if not loop.last %},{% endif %}
{%- endfor %}
  ]
}
"""


@dataclass(frozen=True)
class BenchConfig:
    port: int
    spool: Path | str  # a SQLite file, or a postgresql:// URL (the fleet scenario)
    receiver_url: str = ""
    customers: int = 1000
    file_per_customer: bool = False
    delivery: str = "webhook"  # or "email"
    smtp_port: int = 0
    concurrency: int = 64
    synchronous: str = "FULL"
    retry_schedule: tuple[str, ...] = ("1s", "1s", "1s", "1s", "1s")
    breaker_cooldown: str = "30s"
    node: str = ""  # a fleet node's name (default: the host name)
    workers: int = 1  # [daemon] workers: processes in all (the main one and its workers)

    def settings(self) -> dict[str, object]:
        """What a result file records about the configuration."""
        return {
            "customers": self.customers,
            "triggers_per_customer": 1,
            "delivery": self.delivery,
            "concurrency": self.concurrency,
            "per_destination": self.concurrency,
            "synchronous": self.synchronous,
            "retry_schedule": list(self.retry_schedule),
            "breaker_cooldown": self.breaker_cooldown,
            "file_per_customer": self.file_per_customer,
            "log_level": "warning",
            "spool": "postgresql" if str(self.spool).startswith("postgresql") else "sqlite",
            "workers": self.workers,
        }


def write_config(directory: Path, config: BenchConfig) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "daemon.toml").write_text(_daemon(config))
    (directory / "templates.toml").write_text(_templates())
    if config.file_per_customer:
        customers = directory / "customers"
        customers.mkdir(exist_ok=True)
        for index in range(config.customers):
            name = customer_id(index)
            (customers / f"{name}.toml").write_text(_customer(config, index))
    else:
        text = "".join(_customer(config, index) for index in range(config.customers))
        (directory / "customers.toml").write_text(text)


def _daemon(config: BenchConfig) -> str:
    text = f"""
[daemon]
spool = "{config.spool}"
allow_private_destinations = true
concurrency = {config.concurrency}
per_destination = {config.concurrency}
synchronous = "{config.synchronous}"
breaker_cooldown = "{config.breaker_cooldown}"
grace = "10s"
min_free = "16MiB"
{f'node = "{config.node}"' if config.node else ""}
workers = {config.workers}

[sources.http]
listen = "127.0.0.1:{config.port}"
max_body = "4MiB"
"""
    if config.delivery == "email":
        text += f"""
[smtp]
host = "127.0.0.1"
port = {config.smtp_port}
tls = "none"
from_address = "postbacks@print.example"
from_name = "Bench Print Co."
timeout = "30s"
"""
    return text


def _templates() -> str:
    return f"""
[[template]]
name = "bench-order"
format = "json"
body = '''
{_BODY}'''

[[template]]
name = "bench-mail"
format = "text"
subject = "Order {{{{ orderReferenceId }}}}: {{{{ fulfillmentStatus }}}}"
body = '''
{_BODY}'''

[[lookup]]
name = "carriers"
key = "shipmentMethodUid"
values = {{ "ups_std_uid" = "UPS Standard", "dhl_express_uid" = "DHL Express" }}
"""


def _customer(config: BenchConfig, index: int) -> str:
    name = customer_id(index)
    schedule = ", ".join(f'"{delay}"' for delay in config.retry_schedule)
    if config.delivery == "email":
        template = "bench-mail"
        options = f'to = "orders+{name}@customer.example"'
    else:
        template = "bench-order"
        options = f'url = "{config.receiver_url}"\nsecret = "{SECRET}"'
    return f"""
[[customer]]
id = "{name}"
name = "Customer {index}"

[[trigger]]
name = "{name}-status"
customer = "{name}"
events = ["order.*"]
template = "{template}"
delivery = "{config.delivery}"
retry_schedule = [{schedule}]
[trigger.options]
{options}
"""
