"""The webhook delivery: an HTTP POST of the rendered body, signed and SSRF-guarded.

A built-in plugin, registered from `postbackd.plugins.DEFAULT_PLUGINS` through the same hook a
third party uses.
"""

from __future__ import annotations

from collections.abc import Callable

from postbackd.deliveries.webhook.delivery import WebhookDelivery
from postbackd.plugin import hookimpl


@hookimpl
def postbackd_register_deliveries(register: Callable[[str, type], None]) -> None:
    register("webhook", WebhookDelivery)


__all__ = ["WebhookDelivery", "postbackd_register_deliveries"]
