"""MIME bodies written directly: both forms (7-bit and 8-bit) read back by the stdlib parser
(policy=default) to the same text, within the line limits, with the right transfer encoding."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from hypothesis import example, given
from hypothesis import strategies as st

from postbackd.deliveries.email.body import MimeBody, alternative_body, text_body


def parse(entity: bytes) -> EmailMessage:
    message = email.message_from_bytes(
        b"MIME-Version: 1.0\r\n" + entity, policy=email.policy.default
    )
    assert isinstance(message, EmailMessage)
    return message


def forms(body: MimeBody) -> list[bytes]:
    return [body.seven_bit] + ([body.eight_bit] if body.eight_bit is not None else [])


def expected(text: bytes) -> str:
    """What a reader gets: UTF-8 (bad sequences replaced), every line ending CRLF."""
    lines = text.decode("utf-8", "replace").encode().splitlines()
    return b"".join(line + b"\r\n" for line in lines).decode() or "\r\n"


def assert_sendable(entity: bytes, *, eight_bit: bool) -> None:
    assert b"\0" not in entity
    lines = entity.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines)
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    if not eight_bit:
        assert entity.isascii()


def test_ascii_text_goes_as_7bit_in_both_forms() -> None:
    body = text_body(b"Order 42 shipped.\nTrack it here.")

    assert body.eight_bit is None
    assert body.for_server(True) == (body.seven_bit, False)
    message = parse(body.seven_bit)
    assert message["Content-Transfer-Encoding"] == "7bit"
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == "Order 42 shipped.\r\nTrack it here.\r\n"


def test_utf8_text_has_an_8bit_form_and_a_quoted_printable_one() -> None:
    text = "Hej Søren,\nDin ordre 42 er nu sendt og er på vej til dig med posten 📦\n".encode()

    body = text_body(text)

    assert body.eight_bit is not None
    assert body.for_server(True) == (body.eight_bit, True)
    assert body.for_server(False) == (body.seven_bit, False)
    assert body.eight_bit.endswith(b"\r\n\r\n" + text.replace(b"\n", b"\r\n"))
    eight, seven = parse(body.eight_bit), parse(body.seven_bit)
    assert eight["Content-Transfer-Encoding"] == "8bit"
    assert seven["Content-Transfer-Encoding"] == "quoted-printable"
    assert eight.get_content() == seven.get_content() == expected(text)


def test_mostly_non_latin_text_goes_base64_when_7bit() -> None:
    text = ("注文は発送されました 📦🚚 " * 20).encode()

    body = text_body(text)

    seven = parse(body.seven_bit)
    assert seven["Content-Transfer-Encoding"] == "base64"
    assert seven.get_content() == expected(text)


def test_lines_over_998_octets_have_no_8bit_form() -> None:
    text = ("æøå " * 400).encode() + b"\n" + b"x" * 1200

    body = text_body(text)

    assert body.eight_bit is None
    assert_sendable(body.seven_bit, eight_bit=False)
    assert parse(body.seven_bit).get_content() == expected(text)


def test_long_ascii_lines_and_nul_are_quoted_printable() -> None:
    for text in (b"y" * 2000, b"a\0b\n"):
        body = text_body(text)
        message = parse(body.seven_bit)
        assert message["Content-Transfer-Encoding"] == "quoted-printable"
        assert message.get_content() == expected(text)
        assert_sendable(body.seven_bit, eight_bit=False)


def test_bare_cr_and_lf_become_crlf_and_invalid_utf8_is_replaced() -> None:
    body = text_body(b"one\rtwo\nthree\r\nbad \xff\xfe end")

    assert parse(body.eight_bit or b"").get_content() == (
        "one\r\ntwo\r\nthree\r\nbad \ufffd\ufffd end\r\n"
    )


def test_html_goes_as_multipart_alternative_text_first() -> None:
    html = "<p>Spor pakken: <b>her</b> æøå 🎉</p>".encode()

    body = alternative_body("Spor pakken: her æøå 🎉\n".encode(), html)

    for form in forms(body):
        message = parse(form)
        assert message.get_content_type() == "multipart/alternative"
        text, rich = message.iter_parts()
        assert text.get_content_type() == "text/plain"
        assert rich.get_content_type() == "text/html"
        assert text.get_content() == "Spor pakken: her æøå 🎉\r\n"
        assert rich.get_content() == html.decode() + "\r\n"
    assert parse(body.seven_bit).get("Content-Transfer-Encoding") == "7bit"
    assert body.eight_bit is not None
    assert parse(body.eight_bit).get("Content-Transfer-Encoding") == "8bit"


def test_the_boundary_is_stable_and_not_in_the_parts() -> None:
    first = alternative_body(b"text\n", b"<p>html</p>")
    again = alternative_body(b"text\n", b"<p>html</p>")

    assert first == again
    boundary = parse(first.seven_bit).get_boundary()
    assert boundary is not None and boundary.startswith("=_")
    cunning = alternative_body(f"--{boundary}\n".encode(), b"<p>html</p>")
    assert parse(cunning.seven_bit).get_boundary() != boundary
    assert parse(cunning.seven_bit).get_payload(0).get_content() == f"--{boundary}\r\n"


@given(st.binary(max_size=3000) | st.text(max_size=1500).map(str.encode))
@example(b"")
@example(b".\n..\nFrom here\n")
@example(b"trailing space \ntab\t\n")
@example(b"\xf0\x9f\x93")
def test_any_text_reads_back_the_same_from_every_form(text: bytes) -> None:
    body = text_body(text)

    assert_sendable(body.seven_bit, eight_bit=False)
    for form in forms(body):
        assert_sendable(form, eight_bit=True)
        assert parse(form).get_content() == expected(text)


@given(st.text(max_size=500).map(str.encode), st.text(max_size=500).map(str.encode))
def test_any_alternative_reads_back_the_same_from_every_form(text: bytes, html: bytes) -> None:
    body = alternative_body(text, html)

    assert_sendable(body.seven_bit, eight_bit=False)
    for form in forms(body):
        assert_sendable(form, eight_bit=True)
        plain, rich = parse(form).iter_parts()
        assert plain.get_content() == expected(text)
        assert rich.get_content() == expected(html)
