"""A webhook trigger's `[trigger.options]`: checked once for `check`, parsed at each attempt.

Options (all but `url` optional):

- ``url`` — ``http://`` or ``https://`` with a host. Credentials in it (``user:pass@``) are
  sent as Basic auth and masked in the request log.
- ``method`` — POST (default), PUT or PATCH.
- ``secret`` — a string, or a list of strings to sign with each (rotation). ``whsec_`` +
  base64 is the Standard Webhooks form; any other string is used as its bytes
  (`postbackd.deliveries.webhook.signing` explains what a receiver must do then); a
  ``whsk_`` ed25519 secret key signs ``v1a`` instead of the HMAC ``v1``.
- ``headers`` — a table of header name → string value. The Standard Webhooks headers
  (`webhook-id`, `webhook-timestamp`, `webhook-signature`) and the message framing (`Host`,
  `Content-Length`, `Transfer-Encoding`, `Connection`) belong to postbackd and may not be set;
  `Content-Type` and `User-Agent` may be overridden (e.g. ``application/vnd.acme+json``).
- ``timeout`` — the whole attempt (default 15s); ``connect_timeout`` — the TCP connect
  (default 5s).
- ``tls`` — a table: mutual TLS and the receiver's CA (`postbackd.deliveries.webhook.tls`).
- ``oauth2`` — a table: OAuth2 client credentials, a bearer token fetched for the receiver
  (`postbackd.deliveries.webhook.oauth2`).

The request log masks the values of `webhook-signature` and of every header whose name
contains key, token, secret, auth, pass, sig or cookie, the URL's password, and query
parameters with such names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yarl import URL

from postbackd.deliveries.webhook.oauth2 import OAuth2Options, parse_oauth2
from postbackd.deliveries.webhook.signing import check_secret
from postbackd.deliveries.webhook.tls import TlsOptions, parse_tls
from postbackd.units import parse_duration

DEFAULT_TIMEOUT = 15.0
DEFAULT_CONNECT_TIMEOUT = 5.0
METHODS = ("POST", "PUT", "PATCH")
OPTION_NAMES = (
    "url",
    "method",
    "secret",
    "headers",
    "timeout",
    "connect_timeout",
    "tls",
    "oauth2",
)
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
    }
)
MASK = "***"

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SENSITIVE = re.compile(r"key|token|secret|auth|pass|sig|cookie", re.IGNORECASE)
_NUMERIC_HOST = re.compile(r"[0-9.]+|0x[0-9a-fx.]+", re.IGNORECASE)


@dataclass(frozen=True)
class WebhookOptions:
    url: URL
    method: str = "POST"
    secrets: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    tls: TlsOptions | None = None
    oauth2: OAuth2Options | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> tuple[WebhookOptions | None, list[str]]:
        """The options, or None and every problem as ``"options.NAME: what to do"``."""
        errors: list[str] = []
        for name in options:
            if name not in OPTION_NAMES:
                errors.append(_unknown(str(name)))
        url = _url(options.get("url"), errors)
        method = _method(options.get("method", "POST"), errors)
        secrets = _secrets(options.get("secret"), errors)
        headers = _headers(options.get("headers", {}), errors)
        timeout = _duration("timeout", options.get("timeout"), DEFAULT_TIMEOUT, errors)
        connect = _duration(
            "connect_timeout", options.get("connect_timeout"), DEFAULT_CONNECT_TIMEOUT, errors
        )
        tls = parse_tls(options.get("tls"), errors)
        oauth2 = parse_oauth2(options.get("oauth2"), errors)
        if url is not None and url.user is not None and _has_authorization(headers):
            errors.append(
                "options.headers.Authorization: the url carries credentials (user@) too, "
                "which aiohttp sends as Basic auth; keep only one of them"
            )
        if "oauth2" in options and _has_authorization(headers):
            errors.append(
                "options.headers.Authorization: oauth2 sets Authorization (the bearer token); "
                "remove this header or the oauth2 table"
            )
        if "oauth2" in options and url is not None and url.user is not None:
            errors.append(
                "options.url: carries credentials (user@), sent as Basic auth, and oauth2 "
                "sends a bearer token; keep only one of them"
            )
        if tls is not None and url is not None and url.scheme != "https":
            errors.append(
                f"options.tls: the url is {url.scheme}://, so no TLS is spoken; "
                "use an https:// url or remove the tls table"
            )
        if errors or url is None:
            return None, errors
        return cls(url, method, secrets, headers, timeout, connect, tls, oauth2), []


def _has_authorization(headers: tuple[tuple[str, str], ...]) -> bool:
    return any(name.lower() == "authorization" for name, _ in headers)


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, OPTION_NAMES, n=1, cutoff=0.6)
    hint = f'did you mean "{close[0]}"?' if close else "known: " + ", ".join(OPTION_NAMES)
    return f"options.{name}: unknown webhook option; {hint}"


def _url(value: Any, errors: list[str]) -> URL | None:
    if value is None:
        errors.append('options.url: required, e.g. url = "https://example.com/hooks/orders"')
        return None
    if not isinstance(value, str) or not value.strip():
        errors.append('options.url: expected a URL string like "https://example.com/hooks"')
        return None
    if any(c.isspace() for c in value):
        errors.append("options.url: contains whitespace; percent-encode it (%20)")
        return None
    try:
        url = URL(value)
    except ValueError as exc:
        errors.append(f"options.url: not a valid URL ({exc})")
        return None
    if url.scheme not in ("http", "https"):
        errors.append(f"options.url: must start with http:// or https:// (got {value!r})")
        return None
    if not url.host:
        errors.append(f"options.url: has no host (got {value!r})")
        return None
    if ":" not in url.host and _NUMERIC_HOST.fullmatch(url.host) and not _dotted_quad(url.host):
        errors.append(
            f"options.url: host {url.host} is not a canonical IPv4 address; "
            "write all four parts in decimal, like 192.0.2.10"
        )
        return None
    return url


def _dotted_quad(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(
        p.isdigit() and len(p) <= 3 and int(p) <= 255 and (p == "0" or not p.startswith("0"))
        for p in parts
    )


def _method(value: Any, errors: list[str]) -> str:
    method = value.upper() if isinstance(value, str) else None
    if method not in METHODS:
        errors.append(f"options.method: must be POST, PUT or PATCH (got {value!r})")
        return "POST"
    return method


def _secrets(value: Any, errors: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[tuple[str, Any]] = [("options.secret", value)]
    elif isinstance(value, list | tuple):
        if not value:
            errors.append("options.secret: empty list; remove it to send unsigned postbacks")
            return ()
        items = [(f"options.secret[{i}]", v) for i, v in enumerate(value)]
    else:
        errors.append("options.secret: expected a string or a list of strings")
        return ()
    secrets: list[str] = []
    for where, secret in items:
        if not isinstance(secret, str):
            errors.append(f"{where}: expected a string, got {type(secret).__name__}")
            continue
        try:
            check_secret(secret)
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            continue
        secrets.append(secret)
    return tuple(secrets)


def _headers(value: Any, errors: list[str]) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        errors.append('options.headers: expected a table, e.g. headers = { "X-Api-Key" = "…" }')
        return ()
    headers: list[tuple[str, str]] = []
    for name, text in value.items():
        where = f"options.headers.{name}"
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            errors.append(f"{where}: not a valid header name (letters, digits, - and _ only)")
        elif name.lower() in RESERVED_HEADERS:
            errors.append(f"{where}: set by postbackd itself; remove it from the headers")
        elif not isinstance(text, str):
            errors.append(f'{where}: expected a string; quote it: "{text}"')
        elif any(c in text for c in "\r\n\0"):
            errors.append(f"{where}: contains a line break or NUL, which would split the header")
        else:
            headers.append((name, text))
    return tuple(headers)


def _duration(name: str, value: Any, default: float, errors: list[str]) -> float:
    if value is None:
        return default
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        errors.append(f"options.{name}: {exc}")
        return default
    if seconds <= 0:
        errors.append(f'options.{name}: must be more than zero, e.g. "{default:g}s"')
        return default
    return seconds


def is_sensitive(name: str) -> bool:
    """Whether a header or query parameter name suggests its value is a secret."""
    return bool(_SENSITIVE.search(name))


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers for the request log, secret values replaced by ``***``."""
    masked: dict[str, str] = {}
    for name, value in headers.items():
        shown = MASK if is_sensitive(name) else value
        masked[name] = f"{masked[name]}, {shown}" if name in masked else shown
    return masked


def mask_url(url: URL) -> str:
    """The URL for logs and messages: password and secret-looking query values masked."""
    if url.password is not None:
        url = url.with_password(MASK)
    if any(is_sensitive(name) for name in url.query):
        url = url.with_query([(k, MASK if is_sensitive(k) else v) for k, v in url.query.items()])
    return str(url)
