"""The email message: a cached MIME body plus headers built from the current config per attempt.

Rendering MIME (html→text, quoted-printable, multipart) costs more than sending it, and the
body is fixed at routing time, so it is built once per delivery id and kept in a bounded LRU.
The headers that name people (From, To, Cc, Reply-To) come from the *current* [smtp] settings
and trigger options at each attempt, so a fixed address also fixes mail waiting for a retry.

Everything is serialised with `email.policy.SMTP` and a 7-bit transfer encoding: display names
and subjects with æøå or emoji go out as RFC 2047 encoded-words, bodies as quoted-printable or
base64, so the message passes any server (no SMTPUTF8 or 8BITMIME needed). json and xml
bodies are sent as the text/plain body: readable in any mail client, and the exact payload.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime

from postbackd.deliveries.email_html import html_to_text
from postbackd.deliveries.email_options import EmailOptions, Mailbox
from postbackd.plugin import Delivery

POLICY = email_policy.SMTP.clone(cte_type="7bit")
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
DEFAULT_CACHE_SIZE = 512


@dataclass(frozen=True)
class ComposedMessage:
    """One attempt's message: the bytes for DATA and what the request log shows of it."""

    data: bytes
    message_id: str
    subject: str
    sender: str  # MAIL FROM
    recipients: tuple[str, ...]  # RCPT TO


@dataclass(frozen=True)
class _Body:
    """The MIME body of a delivery, with the inputs it was built from (to detect re-renders)."""

    source: bytes
    format: str
    subject: str | None
    mime: bytes
    one_line_subject: str


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


def _mime_body(delivery: Delivery) -> bytes:
    text = delivery.body.decode("utf-8", errors="replace")
    part = MIMEPart(policy=POLICY)
    if delivery.format == "html":
        part.set_content(html_to_text(text))
        part.add_alternative(text, subtype="html")
    else:
        part.set_content(text)
    return part.as_bytes(policy=POLICY)


class MessageComposer:
    """Builds `ComposedMessage`s, caching the MIME body per delivery id (LRU, bounded)."""

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._cache: OrderedDict[str, _Body] = OrderedDict()
        self._cache_size = cache_size

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
        body = _Body(
            source=delivery.body,
            format=delivery.format,
            subject=delivery.subject,
            mime=_mime_body(delivery),
            one_line_subject=one_line_subject(delivery.subject, delivery),
        )
        self._cache[delivery.id] = body
        self._cache.move_to_end(delivery.id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return body

    def compose(
        self,
        delivery: Delivery,
        sender: Mailbox,
        options: EmailOptions,
        *,
        now: datetime | None = None,
    ) -> ComposedMessage:
        """The message for this attempt: cached body, headers from `sender` and `options`."""
        body = self._body(delivery)
        message_id = f"<{delivery.id}@{sender.domain.strip('[]')}>"
        headers = EmailMessage(policy=POLICY)
        headers["From"] = sender.header_address()
        headers["To"] = [mailbox.header_address() for mailbox in options.to]
        if options.cc:
            headers["Cc"] = [mailbox.header_address() for mailbox in options.cc]
        if options.reply_to:
            headers["Reply-To"] = [mailbox.header_address() for mailbox in options.reply_to]
        headers["Subject"] = body.one_line_subject
        headers["Date"] = format_datetime(now or datetime.now(UTC))
        headers["Message-ID"] = message_id
        headers["Auto-Submitted"] = "auto-generated"
        headers["MIME-Version"] = "1.0"
        head = b"".join(POLICY.fold_binary(name, value) for name, value in headers.items())
        return ComposedMessage(
            data=head + body.mime,
            message_id=message_id,
            subject=body.one_line_subject,
            sender=sender.addr_spec,
            recipients=options.envelope_recipients,
        )
