"""The MIME body of a postback email as bytes: text/plain, or multipart/alternative for html.

Written directly (RFC 2045/2046) instead of through `email.message.MIMEPart`, whose content
manager and generator cost more than the SMTP exchange. Text is UTF-8 with CRLF line ends and
goes out in one of two forms:

- 7-bit, which any server takes: `7bit` when the text is ASCII with lines of at most 998
  octets, else quoted-printable or base64, whichever is shorter;
- 8-bit, for servers that offer 8BITMIME (RFC 6152): the UTF-8 text as it is, readable and
  up to three times smaller than quoted-printable. Only when every line fits in 998 octets
  and there is no NUL (RFC 5321 4.5.3.1.6, RFC 2045 2.8); otherwise only the 7-bit form.

Dot-stuffing is the SMTP client's job, not this module's.
"""

from __future__ import annotations

import hashlib
import re
from base64 import encodebytes
from binascii import b2a_qp
from dataclasses import dataclass
from enum import StrEnum

MAX_LINE = 998  # octets, without CRLF (RFC 5322 2.1.1)
_LONG_LINE = re.compile(rb"[^\r\n]{%d}" % (MAX_LINE + 1))


class Transfer(StrEnum):
    """Content-Transfer-Encoding values (RFC 2045 6.1)."""

    SEVEN_BIT = "7bit"
    EIGHT_BIT = "8bit"
    QUOTED_PRINTABLE = "quoted-printable"
    BASE64 = "base64"


@dataclass(frozen=True)
class MimeBody:
    """The body's MIME entity (Content-* fields, blank line, content) in its 7-bit form and,
    when it differs, its 8-bit form."""

    seven_bit: bytes
    eight_bit: bytes | None = None

    def for_server(self, eight_bit_mime: bool) -> tuple[bytes, bool]:
        """The form to send and whether it is 8-bit (MAIL FROM then needs BODY=8BITMIME)."""
        if eight_bit_mime and self.eight_bit is not None:
            return self.eight_bit, True
        return self.seven_bit, False


@dataclass(frozen=True)
class _Encoded:
    transfer: Transfer
    content: bytes


@dataclass(frozen=True)
class _TextPart:
    subtype: str
    seven_bit: _Encoded
    eight_bit: _Encoded | None

    def entity(self, eight_bit: bool) -> bytes:
        encoded = self.eight_bit if eight_bit and self.eight_bit else self.seven_bit
        return (
            f'Content-Type: text/{self.subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {encoded.transfer}\r\n\r\n"
        ).encode("ascii") + encoded.content


def text_body(text: bytes) -> MimeBody:
    """A text/plain body from UTF-8 text (invalid sequences become U+FFFD)."""
    part = _text_part(text, "plain")
    return MimeBody(
        part.entity(eight_bit=False), part.entity(eight_bit=True) if part.eight_bit else None
    )


def alternative_body(text: bytes, html: bytes) -> MimeBody:
    """multipart/alternative: the plain text first, the html (the preferred form) last."""
    parts = (_text_part(text, "plain"), _text_part(html, "html"))
    seven = [part.entity(eight_bit=False) for part in parts]
    has_eight = any(part.eight_bit for part in parts)
    eight = [part.entity(eight_bit=True) for part in parts] if has_eight else []
    boundary = _boundary(seven + eight)
    return MimeBody(
        _multipart(boundary, seven, Transfer.SEVEN_BIT),
        _multipart(boundary, eight, Transfer.EIGHT_BIT) if has_eight else None,
    )


def _multipart(boundary: str, entities: list[bytes], transfer: Transfer) -> bytes:
    head = (
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
        f"Content-Transfer-Encoding: {transfer}\r\n\r\n"
    ).encode("ascii")
    delimiter = f"--{boundary}\r\n".encode("ascii")
    body = b"\r\n".join(delimiter + entity for entity in entities)
    return head + body + f"\r\n--{boundary}--\r\n".encode("ascii")


def _boundary(entities: list[bytes]) -> str:
    """A boundary that occurs in no part: derived from their content, so the same body gets
    the same bytes. "=_" cannot occur in quoted-printable or base64 text."""
    digest = hashlib.sha256(b"".join(entities))
    while True:
        boundary = "=_" + digest.hexdigest()[:40]
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in entity for entity in entities):
            return boundary
        digest.update(b"\0")


def _text_part(data: bytes, subtype: str) -> _TextPart:
    if not data.isascii():
        data = data.decode("utf-8", "replace").encode("utf-8")
    canonical = _canonical(data)
    sendable = b"\0" not in data and not (len(data) > MAX_LINE and _LONG_LINE.search(canonical))
    if data.isascii():
        if sendable:
            return _TextPart(subtype, _Encoded(Transfer.SEVEN_BIT, canonical), None)
        return _TextPart(subtype, _seven_bit(canonical), None)
    eight = _Encoded(Transfer.EIGHT_BIT, canonical) if sendable else None
    return _TextPart(subtype, _seven_bit(canonical), eight)


def _canonical(data: bytes) -> bytes:
    """Every line ended by CRLF (a bare CR or LF is a line end too, as `bytes.splitlines` has
    it), the last one included."""
    if b"\r" in data:
        return b"".join(line + b"\r\n" for line in data.splitlines())
    if data.endswith(b"\n"):
        return data.replace(b"\n", b"\r\n")
    return data.replace(b"\n", b"\r\n") + b"\r\n"


def _seven_bit(canonical: bytes) -> _Encoded:
    """Quoted-printable or base64, whichever is shorter for this text."""
    quoted = b2a_qp(canonical, istext=True)
    base64_length = (len(canonical) + 2) // 3 * 4 * 78 // 76
    if len(quoted) <= base64_length:
        return _Encoded(Transfer.QUOTED_PRINTABLE, quoted)
    return _Encoded(Transfer.BASE64, encodebytes(canonical).replace(b"\n", b"\r\n"))
