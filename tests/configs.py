"""Configurations and events the project's own tests share (the harness is `postbackd.testing`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def webhook_config(
    receiver_url: str,
    *,
    port: int,
    spool: Path,
    extra_trigger: str = "",
    daemon_extra: str = "",
    token: str | None = None,
) -> dict[str, str]:
    """A one-customer configuration that posts every order event to `receiver_url`."""
    token_line = f'token = "{token}"' if token else ""
    return {
        "daemon.toml": f"""
[daemon]
spool = "{spool}"
allow_private_destinations = true
grace = "5s"
{daemon_extra}

[sources.http]
listen = "127.0.0.1:{port}"
{token_line}
""",
        "acme.toml": f"""
[[customer]]
id = "acme"
name = "Acme Prints"

[[trigger]]
name = "acme-all"
customer = "acme"
events = ["order.*"]
template = "builtin:order-status-json"
delivery = "webhook"
retry_schedule = ["200ms", "200ms", "200ms"]
{extra_trigger}
[trigger.options]
url = "{receiver_url}"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
""",
    }


def event(
    event_id: str, type_: str = "order.shipped", order: str = "o-1", **data: Any
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": type_,
        "customer": "acme",
        "data": {
            "orderId": order,
            "orderReferenceId": f"ref-{order}",
            "fulfillmentStatus": type_.split(".")[-1],
            **data,
        },
    }
