"""Building the email: html→text, the one-line subject, the per-delivery MIME cache."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from postbackd.config.model import SmtpConfig
from postbackd.deliveries.email.html import html_to_text
from postbackd.deliveries.email.message import (
    Addressing,
    AddressingCache,
    MessageComposer,
    one_line_subject,
)
from postbackd.deliveries.email.options import Mailbox, SenderError, parse_options
from postbackd.plugin import Delivery

SENDER = Mailbox("postbacks", "example.com", "Example Print")
OPTIONS = Addressing.of(SENDER, parse_options({"to": "kunde@example.com"}))
WHEN = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def delivery(**changes: object) -> Delivery:
    base = Delivery(
        id="dlv-1",
        event_id="evt-1",
        event_type="order.shipped",
        customer="acme",
        trigger="t",
        attempt=1,
        format="html",
        content_type="text/html",
        subject="Order 42 shipped",
        body=b"<p>Shipped</p>",
        order_id="42",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_html_to_text_keeps_structure_and_links() -> None:
    html = """<!doctype html><html><head><title>Mail</title><style>p { color: red }</style>
    <meta charset="utf-8"></head><body><h1>Your   order
    shipped</h1><p>Hello <b>Kunde</b>,<br>track it <a href="https://t.example/1">here</a>.</p>
    <script>document.write("no")</script>
    <ul><li>Poster</li><li>Mug <a href="https://x.example">https://x.example</a></li></ul>
    <ol><li>first</li><li>second</li></ol>
    <table><tr><th>Item</th><th>Qty</th></tr><tr><td>Poster</td><td>2</td></tr></table>
    <p>Questions? <a href="mailto:help@example.com">help@example.com</a> &amp; more
    <a href="#top">top</a></p><hr><pre>  kept
      as is</pre></body></html>"""

    assert html_to_text(html) == (
        "Your order shipped\n"
        "\n"
        "Hello Kunde,\n"
        "track it here (https://t.example/1).\n"
        "\n"
        "- Poster\n"
        "- Mug https://x.example\n"
        "1. first\n"
        "2. second\n"
        "\n"
        "Item  Qty\n"
        "Poster  2\n"
        "\n"
        "Questions? help@example.com & more top\n"
        "\n"
        "---\n"
        "\n"
        "  kept\n"
        "      as is\n"
    )


def test_html_to_text_of_nested_lists_and_images() -> None:
    html = '<ul><li>a<ul><li>b</li></ul></li></ul><p><img src="x.png" alt="Logo"> Co.</p>'

    assert html_to_text(html) == "- a\n  - b\n\nLogo Co.\n"


def test_one_line_subject() -> None:
    d = delivery()
    assert one_line_subject("Order 42\r\n\tshipped\u2028now", d) == "Order 42 shipped now"
    assert one_line_subject(None, d) == "Order 42: order.shipped"
    assert one_line_subject(" \r\n", replace(d, order_id=None)) == "order.shipped"


def test_the_mime_body_is_built_once_per_delivery() -> None:
    composer = MessageComposer()

    first = composer.compose(delivery(), OPTIONS, now=WHEN)
    second = composer.compose(delivery(attempt=2), OPTIONS, now=WHEN)

    assert first.data == second.data  # same boundary: the cached MIME body was reused
    assert len(composer) == 1


def test_a_re_rendered_body_replaces_the_cached_one() -> None:
    composer = MessageComposer()
    composer.compose(delivery(), OPTIONS, now=WHEN)

    again = composer.compose(delivery(body=b"<p>Delivered</p>"), OPTIONS, now=WHEN)

    message = email.message_from_bytes(again.data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    assert [part.get_content() for part in message.iter_parts()] == [
        "Delivered\r\n",
        "<p>Delivered</p>\r\n",
    ]


def test_the_cache_is_bounded() -> None:
    composer = MessageComposer(cache_size=3)

    for n in range(10):
        composer.compose(delivery(id=f"dlv-{n}"), OPTIONS, now=WHEN)

    assert len(composer) == 3


def test_headers_come_from_the_arguments_of_each_attempt() -> None:
    composer = MessageComposer()
    composer.compose(delivery(), OPTIONS, now=WHEN)
    other = parse_options({"to": "new@example.com", "cc": "cc@example.com"})

    addressing = Addressing.of(Mailbox("orders", "print.example"), other)
    message = composer.compose(delivery(), addressing, now=WHEN)

    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    assert parsed["From"] == "orders@print.example"
    assert parsed["To"] == "new@example.com"
    assert parsed["Cc"] == "cc@example.com"
    assert parsed["Date"] == "Sat, 28 Nov 2026 10:00:00 +0000"
    assert parsed["Message-ID"] == "<dlv-1@print.example>"
    assert message.recipients == ("new@example.com", "cc@example.com")
    assert message.sender == "orders@print.example"


def test_long_lines_and_non_ascii_stay_7bit_safe() -> None:
    body = ("æøå 🎉 " * 400).encode()
    composer = MessageComposer()

    message = composer.compose(delivery(format="text", body=body), OPTIONS, now=WHEN)

    assert message.data.isascii()
    assert max(len(line) for line in message.data.split(b"\r\n")) <= 998
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    assert parsed.get_content().rstrip("\r\n") == body.decode()


def test_addressing_is_cached_by_what_the_options_say() -> None:
    smtp = SmtpConfig(from_address="postbacks@example.com", from_name="Example Print")
    cache = AddressingCache()
    options: dict[str, object] = {"to": ["kunde@example.com"]}

    first = cache.get(smtp, options)
    again = cache.get(smtp, {"to": ["kunde@example.com"]})
    options["to"] = ["ny@example.com"]  # the same mapping, edited
    edited = cache.get(smtp, options)
    renamed = cache.get(replace(smtp, from_name="Print"), options)

    assert again is first
    assert edited.recipients.envelope_recipients == ("ny@example.com",)
    assert b"To: ny@example.com\r\n" in edited.fields
    assert renamed.fields.startswith(b"From: Print <postbacks@example.com>\r\n")


def test_bad_options_and_a_bad_sender_raise_at_every_call() -> None:
    cache = AddressingCache()
    good = SmtpConfig(from_address="postbacks@example.com")
    bad = SmtpConfig(from_address="not-an-address")

    for _ in range(2):
        with pytest.raises(ValueError, match=r"options\.to: 'bob@' is not an email address"):
            cache.get(bad, {"to": "bob@"})  # the trigger's fault is named first
        with pytest.raises(SenderError, match="from_address 'not-an-address'"):
            cache.get(bad, {"to": "kunde@example.com"})
        with pytest.raises(ValueError, match="expected an address or a list"):
            cache.get(good, {"to": 42})


def test_the_message_carries_subject_date_and_id_once_each() -> None:
    composer = MessageComposer()
    long_subject = "Ordre 42: " + "æøå og mere tekst " * 10

    message = composer.compose(delivery(subject=long_subject), OPTIONS, now=WHEN)

    head, _, _ = message.data.partition(b"\r\n\r\n")
    names = [line.split(b":")[0] for line in head.split(b"\r\n") if not line.startswith(b" ")]
    assert names == [
        b"From", b"To", b"Subject", b"Date", b"Message-ID", b"Auto-Submitted",
        b"MIME-Version", b"Content-Type", b"Content-Transfer-Encoding",
    ]  # fmt: skip
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    assert parsed["Subject"] == long_subject.strip()
    assert parsed["From"] == "Example Print <postbacks@example.com>"
