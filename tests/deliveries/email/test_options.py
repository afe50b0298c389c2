"""Recipient options of the email delivery: what `postbackd check` reports, what RCPT gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from postbackd.config.model import Location, SmtpConfig
from postbackd.deliveries.email.options import (
    AddressError,
    Mailbox,
    parse_mailbox,
    parse_options,
    sender_mailbox,
    smtp_problems,
    validate_options,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kunde@example.com", Mailbox("kunde", "example.com")),
        ("Kunde <kunde@example.com>", Mailbox("kunde", "example.com", "Kunde")),
        ('"Doe, John" <j.d+o@example.com>', Mailbox("j.d+o", "example.com", "Doe, John")),
        ("Søren Ærø <soren@example.com>", Mailbox("soren", "example.com", "Søren Ærø")),
        ("<bare@example.com>", Mailbox("bare", "example.com")),
        ("ops@blåbær.no", Mailbox("ops", "xn--blbr-roah.no")),
        ('"john doe"@example.com', Mailbox("john doe", "example.com")),
        ("root@localhost", Mailbox("root", "localhost")),
        ("root@[127.0.0.1]", Mailbox("root", "[127.0.0.1]")),
    ],
)  # fmt: skip
def test_addresses_that_parse(text: str, expected: Mailbox) -> None:
    assert parse_mailbox(text) == expected


def test_rcpt_uses_the_bare_address_and_headers_the_display_name() -> None:
    mailbox = parse_mailbox('"Doe, John" <jd@example.com>')

    assert mailbox.addr_spec == "jd@example.com"
    assert str(mailbox) == '"Doe, John" <jd@example.com>'
    assert parse_mailbox('"john doe"@example.com').addr_spec == '"john doe"@example.com'


@pytest.mark.parametrize(
    "text",
    [
        "bob@",
        "@example.com",
        "bob",
        "bob@exa mple.com",
        "bob@ex..com",
        "bob@-example.com",
        "a b@example.com",
        "bob@example.com>",
        "Bob <bob@example.com",
        "bob@example.com\r\nRCPT TO:<evil@x.org>",
        "Bob\n <bob@example.com>",
        "søren@example.com",
        "x" * 65 + "@example.com",
    ],
)
def test_addresses_that_do_not(text: str) -> None:
    with pytest.raises(AddressError):
        parse_mailbox(text)


def test_validate_options_names_each_problem_by_path() -> None:
    problems = validate_options(
        {"to": ["ok@example.com", "bob@"], "cc": "c@@x", "bcc": 7, "reply-to": "r@x.org"}
    )

    assert problems == [
        "options.reply-to: unknown option (did you mean 'reply_to'?); known: to, cc, bcc, reply_to",
        "options.to[1]: 'bob@' is not an email address",
        "options.cc: 'c@@x' is not an email address",
        "options.bcc: expected an address or a list of addresses",
    ]


def test_to_is_required_and_not_empty() -> None:
    assert validate_options({"cc": "c@x.org"}) == [
        "options.to is required: the recipient address (or a list of them)"
    ]
    assert validate_options({"to": []}) == ["options.to: at least one address is required"]
    assert validate_options({"to": ["a@x.org", 3]}) == ["options.to[1]: expected a string, not int"]


def test_envelope_recipients_are_unique_and_exclude_reply_to() -> None:
    options = parse_options(
        {
            "to": ["A <a@x.org>", "b@x.org"],
            "cc": "A@X.ORG",
            "bcc": ["c@x.org", "b@x.org"],
            "reply_to": "r@x.org",
        }
    )

    assert options.envelope_recipients == ("a@x.org", "b@x.org", "c@x.org")


def test_parse_options_raises_with_every_problem() -> None:
    with pytest.raises(ValueError) as caught:
        parse_options({"to": "bob@", "bcc": "x@"})
    assert str(caught.value) == (
        "options.to: 'bob@' is not an email address; options.bcc: 'x@' is not an email address"
    )


def test_sender_from_smtp_settings() -> None:
    smtp = SmtpConfig(from_address="postbacks@example.com", from_name="Blåbær Print")

    assert sender_mailbox(smtp) == Mailbox("postbacks", "example.com", "Blåbær Print")


def test_smtp_problems_name_the_file() -> None:
    smtp = SmtpConfig(
        from_address="postbacks(at)example.com",
        username="mailer",
        location=Location(Path("/etc/postbackd/conf.d/smtp.toml"), 3),
    )

    assert smtp_problems(smtp) == [
        "[smtp] from_address 'postbacks(at)example.com' is not an email address "
        "(/etc/postbackd/conf.d/smtp.toml:3)",
        "[smtp] username is set but password is not (/etc/postbackd/conf.d/smtp.toml:3)",
    ]
    assert smtp_problems(SmtpConfig()) == []
