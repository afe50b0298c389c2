"""Header fields written directly: read back by the stdlib parser (policy=default) and by an
RFC 2047 decoder, ASCII only, folded within the line limits."""

from __future__ import annotations

import email
import email.policy
from email.header import decode_header, make_header
from email.message import EmailMessage

from hypothesis import assume, example, given
from hypothesis import strategies as st

from postbackd.deliveries.email.headers import address_field, field, unstructured_field
from postbackd.deliveries.email.options import Mailbox, parse_mailbox

# What a one-line subject or a display name can hold: no controls (one_line_subject and the
# address grammar remove or refuse them) and no lone surrogates (UTF-8 cannot carry them).
one_line = st.text(
    st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\x85\u2028\u2029\r\n")
)
local_parts = st.from_regex(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}(\.[a-z0-9]{1,8}){0,2}", fullmatch=True
)
domains = st.from_regex(r"[a-z0-9]{1,12}(\.[a-z]{2,6}){1,2}", fullmatch=True)
# A display name as people write them: a few words of moderate length.
name_words = st.text(
    st.characters(exclude_categories=("Cc", "Cs", "Z"), exclude_characters="\x85"),
    min_size=1,
    max_size=10,
)
names = st.lists(name_words, min_size=1, max_size=4).map(" ".join)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw + b"\r\n", policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def assert_well_formed(raw: bytes, name: str) -> None:
    assert raw.isascii()
    assert raw.endswith(b"\r\n")
    lines = raw[:-2].split(b"\r\n")
    assert lines[0].startswith(name.encode() + b":")
    assert all(line.startswith(b" ") for line in lines[1:])  # folded, never a new field
    assert all(line.strip() for line in lines)
    assert all(len(line) <= 998 for line in lines)


def test_a_plain_subject_is_written_as_it_is() -> None:
    assert unstructured_field("Subject", "Order 42 shipped") == b"Subject: Order 42 shipped\r\n"


def test_a_non_ascii_subject_becomes_encoded_words_around_the_plain_ones() -> None:
    raw = unstructured_field("Subject", "Ordre 42 er sendt – æøå 🚚")

    assert raw == b"Subject: Ordre 42 er sendt =?utf-8?b?4oCTIMOmw7jDpSDwn5qa?=\r\n"
    assert parse(raw)["Subject"] == "Ordre 42 er sendt – æøå 🚚"


def test_a_long_subject_is_folded_under_78_characters() -> None:
    subject = "Blåbær Trykkeri og Bogbinderi på Ærø: " + "ordre 42 er sendt og på vej " * 8

    raw = unstructured_field("Subject", subject.strip())

    assert_well_formed(raw, "Subject")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert parse(raw)["Subject"] == subject.strip()


def test_a_word_too_long_for_a_line_is_split_into_encoded_words() -> None:
    url = "https://track.example/" + "x" * 150

    raw = unstructured_field("Subject", f"Track {url} now")

    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert parse(raw)["Subject"] == f"Track {url} now"


def test_text_that_looks_like_an_encoded_word_is_encoded_itself() -> None:
    raw = unstructured_field("Subject", "literally =?utf-8?q?hi?= here")

    assert b"=?utf-8?q?hi?=" not in raw
    assert parse(raw)["Subject"] == "literally =?utf-8?q?hi?= here"


@given(one_line)
@example("")
@example("  two  spaces  ")
@example("æ" * 100)
@example("a " * 60)
def test_any_one_line_subject_round_trips(subject: str) -> None:
    raw = unstructured_field("Subject", subject)

    assert_well_formed(raw, "Subject")
    assert parse(raw)["Subject"] == subject


def test_addresses_with_plain_quoted_and_encoded_names() -> None:
    mailboxes = [
        parse_mailbox("Søren Ærø <soren@example.com>"),
        parse_mailbox('"Support, Team" <s@x.org>'),
        parse_mailbox("ops@x.org"),
        parse_mailbox("Example Print Co. <a@b.example>"),
        parse_mailbox('"odd local"@b.example'),
    ]

    raw = address_field("To", mailboxes)

    assert_well_formed(raw, "To")
    assert raw.startswith(b"To: =?utf-8?b?U8O4cmVuIMOGcsO4?= <soren@example.com>,")
    parsed = parse(raw)["To"]
    assert [(a.display_name, a.addr_spec) for a in parsed.addresses] == [
        ("Søren Ærø", "soren@example.com"),
        ("Support, Team", "s@x.org"),
        ("", "ops@x.org"),
        ("Example Print Co.", "a@b.example"),
        ("", '"odd local"@b.example'),
    ]


def test_a_long_name_is_folded_and_decodes_by_rfc_2047() -> None:
    name = "Blåbær Trykkeri og Bogbinderi på Ærø og Omegn ApS, Afdeling Syd – Kundeservice"
    mailbox = Mailbox("kundeservice", "trykkeri.example", name)

    raw = address_field("Reply-To", [mailbox])

    assert_well_formed(raw, "Reply-To")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert parse(raw)["Reply-To"].addresses[0].display_name == name


@given(st.lists(st.tuples(names, local_parts, domains), min_size=1, max_size=4))
@example([("Blåbær Trykk 🎉", "postbacks", "example.com")])
@example([('He said "hi" \\ ok', "x", "y.example")])
@example([("=?utf-8?q?not?= encoded", "x", "y.example")])
def test_address_lists_round_trip_through_the_stdlib_parser(
    people: list[tuple[str, str, str]],
) -> None:
    """Names whose non-ASCII runs fit in one encoded-word each (the common case)."""
    mailboxes = [Mailbox(local, domain, name) for name, local, domain in people]

    raw = address_field("To", mailboxes)

    assert_well_formed(raw, "To")
    assume(b"?= =?" not in raw.replace(b"\r\n", b""))  # see the RFC 2047 test below
    parsed = parse(raw)["To"].addresses
    assert [a.addr_spec for a in parsed] == [m.addr_spec for m in mailboxes]
    assert [a.display_name for a in parsed] == [m.name for m in mailboxes]


@given(
    st.text(
        st.characters(exclude_categories=("Cc", "Cs", "Z"), exclude_characters="\x85"),
        min_size=30,
        max_size=200,
    ).filter(lambda name: not name.isascii())
)
def test_any_long_non_ascii_name_decodes_by_rfc_2047(name: str) -> None:
    """Names longer than one encoded-word: split between characters, as RFC 2047 allows.

    The stdlib's default parser keeps the space between two encoded-words inside a display
    name (RFC 2047 6.2 says to drop it; its own generator output does not round-trip either),
    so the legacy `email.header` decoder, which follows the RFC, reads these back.
    """
    raw = address_field("From", [Mailbox("a", "b.example", name)])

    assert_well_formed(raw, "From")
    value = raw.decode("ascii").removeprefix("From:").replace("\r\n", "")
    phrase = value.rsplit("<", 1)[0].strip()
    assert str(make_header(decode_header(phrase))) == name


def test_fixed_fields() -> None:
    assert field("Message-ID", "<d-1@x.example>") == b"Message-ID: <d-1@x.example>\r\n"
