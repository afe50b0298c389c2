"""Trigger options of the email delivery: recipients as validated mailboxes.

`postbackd check` calls `validate_options` for every email trigger, so a typo in an address is
reported with its option path before any mail is due. At delivery time `parse_options` turns
the same options into an `EmailOptions` value. Addresses are checked by our own small grammar
(RFC 5321 mailbox, ASCII local part, IDN domains allowed) rather than `email.utils.parseaddr`,
which accepts almost anything and would let a broken address reach the SMTP server.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from functools import cached_property
from typing import Any

from postbackd.config import SmtpConfig

RECIPIENT_OPTIONS = ("to", "cc", "bcc", "reply_to")
# Recipient options may be templates rendered from the event at each attempt (the daemon
# renders the options a delivery plugin lists in `template_options`, then validates them).
TEMPLATE_OPTIONS = RECIPIENT_OPTIONS
MAX_ADDRESSES = 50  # per option: a rendered value listing more is refused, not mailed

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_QUOTED_LOCAL = re.compile(r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"')
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_IPV4_LITERAL = re.compile(r"\[\d{1,3}(?:\.\d{1,3}){3}\]")
_NAME_ADDR = re.compile(r"(?P<name>[^<>]*?)\s*<(?P<addr>[^<>]*)>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class AddressError(ValueError):
    """A string that is not a usable email address; the message says why."""


class SenderError(ValueError):
    """The [smtp] sender settings are unusable: the admin's to fix, mail waits meanwhile."""


@dataclass(frozen=True)
class Mailbox:
    """One address with an optional display name. `addr_spec` is what RCPT TO carries.

    Mailboxes live in the cached options of a trigger, so the text forms are computed once.
    """

    local: str  # unquoted
    domain: str  # ASCII (IDN domains in their punycode form)
    name: str = ""

    @cached_property
    def addr_spec(self) -> str:
        """`local@domain`, the local part quoted when it is not a dot-atom (RFC 5321 4.1.2)."""
        local = self.local
        if not _DOT_ATOM.fullmatch(local):
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}"

    @cached_property
    def display(self) -> str:
        """How people read it (request log, messages): `"Name, Inc." <addr>` or `addr`."""
        return str(Address(display_name=self.name, username=self.local, domain=self.domain))

    def __str__(self) -> str:
        return self.display


@dataclass(frozen=True)
class EmailOptions:
    """The recipients of one email trigger. `to` is never empty."""

    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...] = ()
    bcc: tuple[Mailbox, ...] = ()
    reply_to: tuple[Mailbox, ...] = ()

    @cached_property
    def envelope_recipients(self) -> tuple[str, ...]:
        """Every RCPT TO address once, in to/cc/bcc order (case-insensitive duplicates dropped)."""
        seen: set[str] = set()
        result: list[str] = []
        for mailbox in (*self.to, *self.cc, *self.bcc):
            spec = mailbox.addr_spec
            if spec.lower() not in seen:
                seen.add(spec.lower())
                result.append(spec)
        return tuple(result)


def parse_mailbox(value: str) -> Mailbox:
    """Parse `addr@example.com` or `Name <addr@example.com>` (the name may be quoted)."""
    text = value.strip()
    if _CONTROL.search(text):
        raise AddressError("contains a line break or control character")
    name = ""
    match = _NAME_ADDR.fullmatch(text)
    if match:
        name = _unquote_name(match["name"].strip())
        text = match["addr"].strip()
    elif "<" in text or ">" in text:
        raise AddressError("has unbalanced '<' or '>'")
    local, domain = _split_addr_spec(text)
    return Mailbox(local=local, domain=domain, name=name)


def _unquote_name(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return re.sub(r"\\(.)", r"\1", name[1:-1])
    return name


def _split_addr_spec(text: str) -> tuple[str, str]:
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise AddressError("is not an email address")
    if not (_DOT_ATOM.fullmatch(local) or _QUOTED_LOCAL.fullmatch(local)):
        if not local.isascii():
            raise AddressError("is not an email address (non-ASCII before the '@')")
        raise AddressError("is not an email address")
    if len(local) > 64:
        raise AddressError("is not an email address (more than 64 characters before the '@')")
    if local.startswith('"'):
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    return local, _ascii_domain(domain)


def _ascii_domain(domain: str) -> str:
    if _IPV4_LITERAL.fullmatch(domain):
        return domain
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise AddressError("is not an email address (invalid domain)") from None
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise AddressError("is not an email address (invalid domain)")
    return ascii_domain


def is_template(value: Any) -> bool:
    """Whether an option value is a template (rendered from the event at each attempt)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def split_addresses(text: str) -> list[str]:
    """``a@x, "Doe, J" <j@y>`` → the two addresses: commas inside quotes or <> do not split."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    angle = 0
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angle += 1
        elif char == ">" and not quoted and angle:
            angle -= 1
        elif char == "," and not quoted and not angle:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _as_list(value: Any) -> list[Any] | None:
    if isinstance(value, str):
        return split_addresses(value) if "," in value else [value]
    if isinstance(value, list | tuple):
        return list(value)
    return None


def _parse_field(key: str, value: Any, errors: list[str]) -> tuple[Mailbox, ...]:
    items = _as_list(value)
    if items is None:
        errors.append(f"options.{key}: expected an address or a list of addresses")
        return ()
    single = isinstance(value, str)
    if len(items) > MAX_ADDRESSES:
        errors.append(f"options.{key}: {len(items)} addresses; at most {MAX_ADDRESSES} are sent")
        return ()
    mailboxes: list[Mailbox] = []
    for index, item in enumerate(items):
        where = f"options.{key}" if single else f"options.{key}[{index}]"
        if not isinstance(item, str):
            errors.append(f"{where}: expected a string, not {type(item).__name__}")
            continue
        if is_template(item):
            continue  # judged once rendered for an event (see TEMPLATE_OPTIONS)
        try:
            mailboxes.append(parse_mailbox(item))
        except AddressError as exc:
            errors.append(f"{where}: {item!r} {exc}")
    return tuple(mailboxes)


def _unknown_key(key: str) -> str:
    close = difflib.get_close_matches(key, RECIPIENT_OPTIONS, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"options.{key}: unknown option{hint}; known: {', '.join(RECIPIENT_OPTIONS)}"


def _collect(options: Mapping[str, Any]) -> tuple[EmailOptions | None, list[str]]:
    errors = [_unknown_key(str(key)) for key in options if key not in RECIPIENT_OPTIONS]
    fields = {
        key: _parse_field(key, options[key], errors) for key in RECIPIENT_OPTIONS if key in options
    }
    if "to" not in options:
        errors.append("options.to is required: the recipient address (or a list of them)")
    elif (
        not fields["to"]
        and not any(e.startswith("options.to") for e in errors)
        and not _templated(options["to"])
    ):
        errors.append("options.to: at least one address is required")
    if errors:
        return None, errors
    if any(_templated(options[key]) for key in RECIPIENT_OPTIONS if key in options):
        return None, []  # valid as far as can be told before an event renders it
    return EmailOptions(**fields), []


def _templated(value: Any) -> bool:
    items = value if isinstance(value, list | tuple) else [value]
    return any(is_template(item) for item in items)


def validate_options(options: Mapping[str, Any]) -> list[str]:
    """Every problem with an email trigger's options, one message each ([] when valid)."""
    return _collect(options)[1]


def parse_options(options: Mapping[str, Any]) -> EmailOptions:
    """The options as an `EmailOptions`; raises ValueError with all problems joined (also
    for a template left unrendered: the daemon renders them before `deliver`)."""
    parsed, errors = _collect(options)
    if parsed is None:
        raise ValueError("; ".join(errors) or "recipient templates were not rendered")
    return parsed


def sender_mailbox(smtp: SmtpConfig) -> Mailbox:
    """The From mailbox of the current [smtp] settings; raises SenderError naming the setting."""
    where = f" ({smtp.location})" if smtp.location else ""
    try:
        mailbox = parse_mailbox(smtp.from_address)
    except AddressError as exc:
        raise SenderError(f"[smtp] from_address {smtp.from_address!r} {exc}{where}") from None
    name = smtp.from_name or mailbox.name
    if _CONTROL.search(name):
        raise SenderError(f"[smtp] from_name contains a line break or control character{where}")
    return Mailbox(local=mailbox.local, domain=mailbox.domain, name=name)


def smtp_problems(smtp: SmtpConfig) -> list[str]:
    """Problems of the [smtp] table that only the email delivery knows about (for `check`)."""
    problems: list[str] = []
    try:
        sender_mailbox(smtp)
    except ValueError as exc:
        problems.append(str(exc))
    if smtp.username and smtp.password is None:
        where = f" ({smtp.location})" if smtp.location else ""
        problems.append(f"[smtp] username is set but password is not{where}")
    return problems
