"""The email message of one attempt: cached pieces joined as bytes.

A message is three kinds of pieces, each built as seldom as its inputs change:

- the addressing (From, To, Cc, Reply-To fields and the envelope), once per [smtp] sender and
  trigger options — the *current* ones at each attempt, so a fixed address also fixes mail
  waiting for a retry, yet 5,000 postbacks to one trigger build it once;
- the MIME body and the Subject field, once per delivery id (bounded LRU): both are fixed at
  routing time, and rendering MIME costs more than sending it;
- Date and Message-ID, per attempt (Message-ID stable across attempts: the delivery id).

Headers are ASCII (RFC 2047 encoded-words, see email_headers.py); the body has a 7-bit form
any server takes and, for UTF-8 text, an 8-bit form for servers offering 8BITMIME (see
email_body.py). json and xml bodies are sent as the text/plain body: readable in any mail
client, and the exact payload.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from postbackd.config import SmtpConfig
from postbackd.deliveries.email.body import MimeBody, alternative_body, text_body
from postbackd.deliveries.email.headers import address_field, field, unstructured_field
from postbackd.deliveries.email.html import html_to_text
from postbackd.deliveries.email.options import (
    EmailOptions,
    Mailbox,
    parse_options,
    sender_mailbox,
)
from postbackd.plugin import Delivery

_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
_FIXED_FIELDS = b"Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
DEFAULT_CACHE_SIZE = 512
DEFAULT_ADDRESSING_CACHE_SIZE = 4096  # triggers × sender settings seen recently


@dataclass(frozen=True)
class Addressing:
    """Who a message is from and to: the header fields naming people, and the envelope."""

    sender: Mailbox
    recipients: EmailOptions
    fields: bytes  # From, To, Cc, Reply-To (Bcc only in the envelope)
    id_domain: str  # the right-hand side of Message-ID

    @classmethod
    def of(cls, sender: Mailbox, recipients: EmailOptions) -> Addressing:
        fields = address_field("From", [sender]) + address_field("To", recipients.to)
        if recipients.cc:
            fields += address_field("Cc", recipients.cc)
        if recipients.reply_to:
            fields += address_field("Reply-To", recipients.reply_to)
        return cls(sender, recipients, fields, sender.domain.strip("[]"))


class AddressingCache:
    """`Addressing` per sender settings and trigger options, by content (LRU, bounded).

    Keyed by what the options say, not by the mapping's identity, so an edited trigger gets
    new addressing at once. Invalid settings are not cached: they raise at every attempt.
    """

    def __init__(self, size: int = DEFAULT_ADDRESSING_CACHE_SIZE) -> None:
        self._entries: OrderedDict[Hashable, Addressing] = OrderedDict()
        self._size = size

    def get(self, smtp: SmtpConfig, options: Mapping[str, Any]) -> Addressing:
        """Raises ValueError for bad options (the trigger's fault) and `SenderError` for a bad
        [smtp] sender (checked after the options, so an options error is reported first)."""
        key = _options_key(options)
        full_key = None if key is None else (smtp.from_address, smtp.from_name, key)
        if full_key is not None:
            cached = self._entries.get(full_key)
            if cached is not None:
                self._entries.move_to_end(full_key)
                return cached
        recipients = parse_options(options)
        addressing = Addressing.of(sender_mailbox(smtp), recipients)
        if full_key is not None:
            self._entries[full_key] = addressing
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return addressing


def _options_key(options: Mapping[str, Any]) -> Hashable | None:
    """The options as a hashable value, or None when they are not strings and lists of
    strings (then they are invalid anyway, and parsed every time to report why)."""
    items: list[tuple[str, str | tuple[str, ...]]] = []
    for name, value in options.items():
        if isinstance(value, str):
            items.append((name, value))
        elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            items.append((name, tuple(value)))
        else:
            return None
    return tuple(items)


@dataclass(frozen=True)
class ComposedMessage:
    """One attempt's message: header fields and body, what DATA carries."""

    head: bytes
    body: MimeBody
    message_id: str
    subject: str
    sender: str  # MAIL FROM
    recipients: tuple[str, ...]  # RCPT TO

    @property
    def data(self) -> bytes:
        """The 7-bit form, which any server takes."""
        return self.head + self.body.seven_bit

    def for_server(self, eight_bit_mime: bool) -> tuple[bytes, bool]:
        """The bytes for a server (8-bit when it offers 8BITMIME and the body has such a form)
        and whether they are 8-bit."""
        body, eight_bit = self.body.for_server(eight_bit_mime)
        return self.head + body, eight_bit


@dataclass(frozen=True)
class _Body:
    """The MIME body and Subject of a delivery, with the inputs they were built from (to
    detect re-renders)."""

    source: bytes
    format: str
    subject: str | None
    mime: MimeBody
    one_line_subject: str
    subject_field: bytes


def one_line_subject(subject: str | None, delivery: Delivery) -> str:
    """The subject on one line: CR, LF and other controls become spaces (no header injection).

    A template without a subject gets "Order <order id>: <event type>".
    """
    text = _LINE_BREAKS.sub(" ", subject or "").strip()
    if text:
        return re.sub(r" {2,}", " ", text)
    return (
        f"Order {delivery.order_id}: {delivery.event_type}"
        if delivery.order_id
        else (delivery.event_type)
    )


def _mime_body(delivery: Delivery) -> MimeBody:
    if delivery.format == "html":
        html = delivery.body.decode("utf-8", errors="replace")
        return alternative_body(html_to_text(html).encode("utf-8"), delivery.body)
    return text_body(delivery.body)


class MessageComposer:
    """Builds `ComposedMessage`s, caching the MIME body per delivery id (LRU, bounded)."""

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._cache: OrderedDict[str, _Body] = OrderedDict()
        self._cache_size = cache_size
        self._date_second = -1
        self._date_field = b""

    def __len__(self) -> int:
        return len(self._cache)

    def _body(self, delivery: Delivery) -> _Body:
        cached = self._cache.get(delivery.id)
        if (
            cached is not None
            and cached.source == delivery.body
            and cached.format == delivery.format
            and cached.subject == delivery.subject
        ):
            self._cache.move_to_end(delivery.id)
            return cached
        subject = one_line_subject(delivery.subject, delivery)
        body = _Body(
            source=delivery.body,
            format=delivery.format,
            subject=delivery.subject,
            mime=_mime_body(delivery),
            one_line_subject=subject,
            subject_field=unstructured_field("Subject", subject),
        )
        self._cache[delivery.id] = body
        self._cache.move_to_end(delivery.id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return body

    def _date(self, now: datetime | None) -> bytes:
        """The Date field; the clock's is formatted once per second."""
        if now is not None:
            return field("Date", format_datetime(now))
        second = int(time.time())
        if second != self._date_second:
            self._date_field = field("Date", format_datetime(datetime.fromtimestamp(second, UTC)))
            self._date_second = second
        return self._date_field

    def compose(
        self, delivery: Delivery, addressing: Addressing, *, now: datetime | None = None
    ) -> ComposedMessage:
        """The message for this attempt: cached body and subject, the given addressing."""
        body = self._body(delivery)
        message_id = f"<{delivery.id}@{addressing.id_domain}>"
        head = b"".join(
            (
                addressing.fields,
                body.subject_field,
                self._date(now),
                field("Message-ID", message_id),
                _FIXED_FIELDS,
            )
        )
        return ComposedMessage(
            head=head,
            body=body.mime,
            message_id=message_id,
            subject=body.one_line_subject,
            sender=addressing.sender.addr_spec,
            recipients=addressing.recipients.envelope_recipients,
        )
