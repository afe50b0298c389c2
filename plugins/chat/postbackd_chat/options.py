"""The options of a chat trigger, checked once at configuration load, and the message line.

``[trigger.options]`` of a trigger with ``delivery = "chat"``:

- ``url`` (required) — the incoming-webhook URL (Slack, Mattermost, Rocket.Chat, Teams);
- ``channel``, ``username``, ``icon_emoji`` — sent when set (Slack and Mattermost honour them);
- ``template`` — the message line, with ``{placeholders}`` from `PLACEHOLDERS`
  (``{{`` and ``}}`` are literal braces); default `DEFAULT_TEMPLATE`;
- ``escape`` — escape ``& < >`` in values the Slack way (default true), so an order
  reference can never turn into a link or a mention;
- ``timeout`` — the whole request (default ``"10s"``); postbackd cuts a hung attempt 5 s later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from postbackd.plugin import Delivery, parse_duration

DEFAULT_TEMPLATE = "{customer}: order {order_id} is {status} ({event_type}, delivery {delivery_id})"
PLACEHOLDERS = (
    "customer",
    "order_id",
    "status",
    "event_type",
    "event_id",
    "delivery_id",
    "trigger",
    "attempt",
    "subject",
    "body",
)
KNOWN = frozenset({"url", "channel", "username", "icon_emoji", "template", "escape", "timeout"})
_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


@dataclass(frozen=True)
class ChatOptions:
    url: str
    template: str = DEFAULT_TEMPLATE
    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None
    escape: bool = True
    timeout: float = 10.0

    @classmethod
    def parse(
        cls, options: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
    ) -> tuple[ChatOptions | None, list[str]]:
        """The options, or None and every problem found (one message per problem)."""
        merged = {**(defaults or {}), **options}
        errors = [
            f"options.{name}: unknown option (known: {', '.join(sorted(KNOWN))})"
            for name in sorted(set(options) - KNOWN)
        ]
        url = merged.get("url")
        if not isinstance(url, str) or not url:
            errors.append("options.url is required: the chat service's incoming-webhook URL")
        else:
            if not _is_http_url(url):
                errors.append(f"options.url: {mask_url(url)!r} is not an http(s) URL with a host")
        texts = {}
        for name in ("channel", "username", "icon_emoji", "template"):
            value = merged.get(name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                errors.append(f"options.{name}: expected a non-empty string")
            texts[name] = value
        template = texts["template"] if isinstance(texts["template"], str) else DEFAULT_TEMPLATE
        errors.extend(template_errors(template))
        escape = merged.get("escape", True)
        if not isinstance(escape, bool):
            errors.append("options.escape: expected true or false")
        timeout = 10.0
        if "timeout" in merged:
            try:
                timeout = parse_duration(merged["timeout"])
            except (TypeError, ValueError) as exc:
                errors.append(f"options.timeout: {exc}")
            else:
                if timeout <= 0:
                    errors.append("options.timeout: must be more than 0s")
        if errors:
            return None, errors
        return (
            cls(
                url=str(url),
                template=template,
                channel=texts["channel"],
                username=texts["username"],
                icon_emoji=texts["icon_emoji"],
                escape=bool(escape),
                timeout=timeout,
            ),
            [],
        )

    def payload(self, delivery: Delivery) -> dict[str, str]:
        """The JSON body: ``{"text": ...}`` plus the optional fields that are set."""
        body: dict[str, str] = {"text": self.message(delivery)}
        for name in ("channel", "username", "icon_emoji"):
            value = getattr(self, name)
            if value:
                body[name] = value
        return body

    def message(self, delivery: Delivery) -> str:
        values = placeholder_values(delivery)
        if self.escape:
            values = {key: value.translate(_SLACK_ESCAPES) for key, value in values.items()}

        def substitute(match: re.Match[str]) -> str:
            token = match.group(0)
            if token in ("{{", "}}"):
                return token[0]
            return values[match.group(1).strip()]

        return _FIELD.sub(substitute, self.template)


def template_errors(template: str) -> list[str]:
    errors = []
    for match in _FIELD.finditer(template):
        name = match.group(1)
        if name is not None and name.strip() not in PLACEHOLDERS:
            errors.append(
                f"options.template: unknown placeholder {{{name}}} "
                f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}; write {{{{ for a brace)"
            )
    stripped = _FIELD.sub("", template)
    if "{" in stripped or "}" in stripped:
        errors.append("options.template: unbalanced brace (write {{ or }} for a literal one)")
    return errors


def placeholder_values(delivery: Delivery) -> dict[str, str]:
    status = delivery.event_type.rsplit(".", 1)[-1].replace("_", " ")
    return {
        "customer": delivery.customer,
        "order_id": delivery.order_id or "?",
        "status": status,
        "event_type": delivery.event_type,
        "event_id": delivery.event_id,
        "delivery_id": delivery.id,
        "trigger": delivery.trigger,
        "attempt": str(delivery.attempt),
        "subject": delivery.subject or "",
        "body": delivery.body.decode("utf-8", errors="replace").strip(),
    }


def mask_url(url: str) -> str:
    """The URL without its secret: incoming-webhook URLs carry their token in the path."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if not parts.hostname:
        return "<invalid URL>"
    first = parts.path.strip("/").split("/", 1)[0]
    shown = f"/{first}/…" if first else "/"
    return f"{parts.scheme}://{parts.hostname}{port}{shown}"


def destination(url: str) -> str:
    """``scheme://host:port``: the peer, for postbackd's concurrency bound and breaker."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "chat:"
    return f"{parts.scheme}://{parts.hostname}:{port}"


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
