"""`ChatDelivery`: one POST of ``{"text": ...}`` to an incoming webhook per attempt.

What an answer means: 2xx is done; 408, 429 and 5xx are retried (``Retry-After`` honoured);
any other 4xx is permanent — the webhook was removed or its URL is wrong, and retrying will
not fix it (fix ``options.url``: the waiting deliveries use the new one). A network error or
no answer within ``options.timeout`` is retried. The request log gets the URL with its secret
path masked, the JSON sent, and the status and first KiB of the answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from postbackd.plugin import Delivery, Outcome, PluginContext, SettingsReader, read_mapping
from postbackd_chat.options import ChatOptions, destination, mask_url

EXCERPT = 1024
SETTINGS = frozenset({"username", "icon_emoji", "channel"})


class ChatDelivery:
    """Registered as ``chat``. ``[deliveries.chat]`` may set defaults for every trigger:
    ``username``, ``icon_emoji`` and ``channel``."""

    def __init__(self, settings: Mapping[str, Any], context: PluginContext | None = None) -> None:
        self._defaults = read_mapping(self.read_settings, settings, "[deliveries.chat]")
        self._user_agent = f"postbackd-chat (postbackd/{context.version if context else '?'})"
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def read_settings(cls, reader: SettingsReader) -> dict[str, str]:
        """The defaults ``[deliveries.chat]`` sets; `postbackd check` reports each problem at
        its line, and building the delivery from a dict refuses the same ones."""
        for key in reader.data:
            if key not in SETTINGS:
                reader.error(
                    f"unknown setting; [deliveries.chat] takes {', '.join(sorted(SETTINGS))} "
                    "(per-trigger values go in [trigger.options])",
                    key,
                )
        return {key: value for key in sorted(SETTINGS) if (value := reader.string(key))}

    def validate_options(self, options: Mapping[str, Any]) -> list[str]:
        return ChatOptions.parse(options, self._defaults)[1]

    def destination(self, options: Mapping[str, Any]) -> str:
        return destination(str(options.get("url", "")))

    async def deliver(self, delivery: Delivery, options: Mapping[str, Any]) -> Outcome:
        parsed, errors = ChatOptions.parse(options, self._defaults)
        if parsed is None:
            return Outcome.fail("; ".join(errors))
        body = json.dumps(parsed.payload(delivery), ensure_ascii=False).encode()
        request = {
            "method": "POST",
            "url": mask_url(parsed.url),
            "headers": {"Content-Type": "application/json"},
            "body": body.decode(),
        }
        where = mask_url(parsed.url)
        try:
            async with self._client().post(
                parsed.url,
                data=body,
                headers={"Content-Type": "application/json", "User-Agent": self._user_agent},
                timeout=aiohttp.ClientTimeout(total=parsed.timeout),
                allow_redirects=False,
            ) as answer:
                excerpt = (await answer.content.read(EXCERPT)).decode("utf-8", "replace")
                status, headers = answer.status, dict(answer.headers)
        except TimeoutError:
            return Outcome.retry(
                f"no answer from {where} within {parsed.timeout:g}s", request=request
            )
        except aiohttp.ClientError as exc:
            return Outcome.retry(
                f"cannot post to {where}: {exc or type(exc).__name__}", request=request
            )
        response = {"status": status, "headers": headers, "body": excerpt}
        log = {"status": status, "request": request, "response": response}
        if 200 <= status < 300:
            return Outcome.ok(detail=f"posted to {where}", **log)
        said = excerpt.strip()[:200] or "(empty body)"
        if status in (408, 429) or status >= 500:
            return Outcome.retry(
                f"{where} answered {status}: {said}",
                after=_retry_after(headers.get("Retry-After")),
                **log,
            )
        return Outcome.fail(
            f"{where} answered {status}: {said} — the webhook is gone or its URL is wrong; "
            "fix options.url (deliveries waiting for a retry use the new one)",
            **log,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session


def _retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After`` (a number or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
