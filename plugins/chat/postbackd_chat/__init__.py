"""postbackd-chat: order-status lines in a chat channel through an incoming webhook.

Slack, Mattermost, Rocket.Chat and Microsoft Teams incoming webhooks all accept
``{"text": "..."}``. A trigger with ``delivery = "chat"`` posts one readable line per event:

    [[trigger]]
    name = "ops-channel"
    customer = "acme"
    events = ["order.failed", "order.cancelled"]
    template = "builtin:order-status-json"
    delivery = "chat"
    [trigger.options]
    url = "${env:SLACK_WEBHOOK_URL}"
    channel = "#print-ops"
    template = ":warning: {customer}: order {order_id} {status}"

See `postbackd_chat.options` for every option and `postbackd_chat.delivery` for what each
answer of the chat service means.
"""

from __future__ import annotations

from postbackd.plugin import RegisterDelivery, hookimpl
from postbackd_chat.delivery import ChatDelivery

__version__ = "0.1.0"
POSTBACKD_API_VERSION = 1

__all__ = ["ChatDelivery"]


@hookimpl
def postbackd_register_deliveries(register: RegisterDelivery) -> None:
    register("chat", ChatDelivery)
