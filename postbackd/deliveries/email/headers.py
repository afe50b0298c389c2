"""Header fields of an email as bytes, written directly (RFC 5322 syntax, RFC 2047 encoding).

The stdlib `EmailMessage` parses every value it is given back into a token tree and folds it
again: about a millisecond per message, more than sending it. The fields a postback carries
are few and their values are known (a one-line subject, validated mailboxes), so they are
written here in one pass: plain words stay as they are, words that are not plain ASCII (or
that could be mistaken for an encoded-word) become RFC 2047 `=?utf-8?b?...?=` encoded-words
of at most 45 bytes each, and lines are folded at spaces to stay under 78 characters.

Every line stays ASCII, so no server needs SMTPUTF8 for the headers. Runs of words that need
encoding are encoded together with the spaces between them (like the stdlib generator), so
the ordinary case — a name or subject with a few non-ASCII words — decodes the same in every
reader.
"""

from __future__ import annotations

import re
from base64 import b64encode
from collections.abc import Callable, Iterable, Sequence

from postbackd.deliveries.email.options import Mailbox

LINE_LENGTH = 78  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters (MUST ≤ 998)
_EW_BYTES = 45  # 60 base64 characters: an encoded-word of 72 characters (RFC 2047: ≤ 75)
_EW_PREFIX = "=?utf-8?b?"
_VCHARS = re.compile(r"[\x21-\x7e]+")
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_LONGEST_PLAIN = LINE_LENGTH - 2  # a word that cannot fit on a folded line of its own


def field(name: str, value: str) -> bytes:
    """A field whose value is known to be short printable ASCII (Date, Message-ID)."""
    return f"{name}: {value}\r\n".encode("ascii")


def unstructured_field(name: str, text: str) -> bytes:
    """A free-text field such as Subject; `text` must be one line (no CR or LF)."""
    if (
        len(name) + 2 + len(text) <= LINE_LENGTH
        and text.isascii()
        and text.isprintable()
        and "=?" not in text
        and "  " not in text
        and text.strip(" ") == text != ""
    ):
        return f"{name}: {text}\r\n".encode("ascii")  # the common case, as _fold would write it
    return _fold(name, _words(text.split(" "), _plain_text))


def address_field(name: str, mailboxes: Sequence[Mailbox]) -> bytes:
    """An address-list field (From, To, Cc, Reply-To): `Name <addr>, addr, ...`."""
    atoms: list[str] = []
    for index, mailbox in enumerate(mailboxes):
        mailbox_atoms = _mailbox_atoms(mailbox)
        if index < len(mailboxes) - 1:
            mailbox_atoms[-1] += ","
        atoms += mailbox_atoms
    return _fold(name, atoms)


def _mailbox_atoms(mailbox: Mailbox) -> list[str]:
    if not mailbox.name:
        return [mailbox.addr_spec]
    return [*_phrase(mailbox.name), f"<{mailbox.addr_spec}>"]


def _phrase(name: str) -> list[str]:
    """A display name as RFC 5322 words: atoms, one quoted-string, or encoded-words."""
    words = name.split(" ")
    if name.isascii() and "=?" not in name:
        if all(_ATEXT.fullmatch(word) and len(word) <= _LONGEST_PLAIN for word in words):
            return words
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(quoted) <= _LONGEST_PLAIN:
            return [quoted]
    return _words(words, _plain_atom)


def _plain_text(word: str) -> bool:
    """Whether a word of unstructured text can be written as it is."""
    return len(word) <= _LONGEST_PLAIN and bool(_VCHARS.fullmatch(word)) and "=?" not in word


def _plain_atom(word: str) -> bool:
    """Whether a word of a display name can be written as an atom."""
    return len(word) <= _LONGEST_PLAIN and bool(_ATEXT.fullmatch(word)) and "=?" not in word


def _words(words: list[str], plain: Callable[[str], bool]) -> list[str]:
    """Words that were separated by single spaces → atoms: plain words kept, others encoded.

    Consecutive words that are not plain are encoded together with the spaces between them,
    so decoding gives the text back exactly. A lone empty word (two spaces in a row, a space
    at either end) has no text to encode and takes a neighbouring plain word with it.
    """
    flags = [plain(word) for word in words]
    last = len(words) - 1
    for index, word in enumerate(words):
        if word or (index > 0 and not flags[index - 1]) or (index < last and not flags[index + 1]):
            continue
        if index < last:
            flags[index + 1] = False
        elif index > 0:
            flags[index - 1] = False
    atoms: list[str] = []
    run: list[str] = []
    for word, is_plain in zip(words, flags, strict=True):
        if not is_plain:
            run.append(word)
            continue
        if run:
            atoms += _encoded_words(" ".join(run))
            run = []
        atoms.append(word)
    if run:
        atoms += _encoded_words(" ".join(run))
    return atoms


def _encoded_words(text: str) -> list[str]:
    """`text` as RFC 2047 B encoded-words of at most `_EW_BYTES` bytes each, split between
    characters, never inside one (a lone surrogate, which UTF-8 cannot carry, becomes "?")."""
    words = []
    data = text.encode("utf-8", "replace")
    start = 0
    while start < len(data):
        end = min(start + _EW_BYTES, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        words.append(_EW_PREFIX + b64encode(data[start:end]).decode("ascii") + "?=")
        start = end
    return words


def _fold(name: str, atoms: Iterable[str]) -> bytes:
    """`Name: atom atom ...` folded before an atom that would pass `LINE_LENGTH`."""
    lines = []
    line = name + ":"
    first = True
    for atom in atoms:
        if len(line) + 1 + len(atom) > LINE_LENGTH and not first:
            lines.append(line)
            line = " " + atom
        else:
            line += " " + atom
        first = False
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
