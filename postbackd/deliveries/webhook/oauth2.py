"""OAuth2 client credentials (RFC 6749 §4.4) for receivers behind an authorization server.

A trigger's ``[trigger.options.oauth2]``:

- ``token_url`` — the authorization server's token endpoint (http:// or https://; the SSRF
  guard and `[daemon] proxy` apply to it as to the receiver).
- ``client_id``, ``client_secret`` — secret references (``"${credential:acme-oauth}"``).
- ``scope`` — optional, space-separated; ``audience`` — optional (Auth0, Okta and others ask
  for the API it is for).
- ``client_auth`` — ``"basic"`` (default: HTTP Basic, RFC 6749 §2.3.1: id and secret
  form-urlencoded first) or ``"post"`` (id and secret in the form body, for servers that only
  take that).

The access token is sent as ``Authorization: Bearer …``, kept until `EXPIRY_SKEW` seconds
before ``expires_in`` ends (or, without one, until a receiver refuses it), and fetched once
however many attempts need it at the same time. A 401 from the receiver drops that token: the
attempt fetches a new one and sends once more. Neither the secret nor a token is ever put in a
message, a log line or the request log.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import aiohttp
from yarl import URL

OAUTH2_OPTION_NAMES = (
    "token_url",
    "client_id",
    "client_secret",
    "scope",
    "audience",
    "client_auth",
)
CLIENT_AUTH = ("basic", "post")
EXPIRY_SKEW = 30.0  # seconds before expiry a token is no longer used: clocks and transit differ
TOKEN_RESPONSE_LIMIT = 64 * 1024  # bytes of a token response read; a token is far smaller
TOKENS_LIMIT = 1024  # clients whose tokens are kept; more (many reloads of new ones) start afresh
REASON_CHARS = 200  # characters of a server's error_description quoted in a message


@dataclass(frozen=True)
class OAuth2Options:
    token_url: URL
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None
    audience: str | None = None
    client_auth: str = "basic"


def parse_oauth2(value: Any, errors: list[str]) -> OAuth2Options | None:
    """``options.oauth2`` as `OAuth2Options` (None when absent); problems appended as
    ``"options.oauth2.NAME: what to do"``, never quoting the secret."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        errors.append(
            "options.oauth2: expected a table with token_url, client_id and client_secret, "
            'e.g. [trigger.options.oauth2] token_url = "https://login.example.com/oauth/token"'
        )
        return None
    before = len(errors)
    for name in value:
        if name not in OAUTH2_OPTION_NAMES:
            known = ", ".join(OAUTH2_OPTION_NAMES)
            errors.append(f"options.oauth2.{name}: unknown OAuth2 option (known: {known})")
    token_url = _token_url(value.get("token_url"), errors)
    client_id = _text(value, "client_id", errors, required=True)
    client_secret = _text(value, "client_secret", errors, required=True)
    scope = _text(value, "scope", errors, required=False)
    audience = _text(value, "audience", errors, required=False)
    client_auth = value.get("client_auth", "basic")
    if client_auth not in CLIENT_AUTH:
        errors.append(
            f'options.oauth2.client_auth: "basic" (default) or "post", not {client_auth!r}'
        )
    if len(errors) > before or token_url is None or client_id is None or client_secret is None:
        return None
    return OAuth2Options(token_url, client_id, client_secret, scope, audience, str(client_auth))


def _token_url(value: Any, errors: list[str]) -> URL | None:
    example = 'e.g. token_url = "https://login.example.com/oauth/token"'
    if not isinstance(value, str) or not value.strip():
        errors.append(f"options.oauth2.token_url: required, {example}")
        return None
    try:
        url = URL(value)
    except ValueError as exc:
        errors.append(f"options.oauth2.token_url: not a valid URL ({exc})")
        return None
    if url.scheme not in ("http", "https") or not url.host or any(c.isspace() for c in value):
        errors.append(f"options.oauth2.token_url: expected an http(s) URL with a host, {example}")
        return None
    if url.user is not None:
        errors.append(
            "options.oauth2.token_url: carries credentials (user@); "
            "give them as client_id and client_secret"
        )
        return None
    return url


def _text(table: Mapping[str, Any], name: str, errors: list[str], *, required: bool) -> str | None:
    value = table.get(name)
    if value is None:
        if required:
            errors.append(
                f'options.oauth2.{name}: required, e.g. {name} = "${{credential:acme-{name}}}"'
            )
        return None
    if not isinstance(value, str) or not value:
        errors.append(f"options.oauth2.{name}: expected a non-empty string")
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        errors.append(f"options.oauth2.{name}: contains a control character (a line break?)")
        return None
    return value


class TokenError(Exception):
    """The token endpoint did not give a usable token: a reason fit for the request log.

    ``permanent`` when only a configuration change helps (the SSRF guard refused the URL).
    """

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    expires_at: float | None  # time.monotonic() after which it is not used; None: until a 401


Fetch = Callable[[OAuth2Options], Awaitable[AccessToken]]


class TokenCache:
    """Access tokens per client (options), shared by every attempt and fetched single-flight.

    When a token is missing or expired, the first attempt that needs it starts the one fetch
    and every attempt arriving meanwhile awaits that same fetch; a failed fetch fails them all
    (each attempt then retries on its schedule) and the next attempt tries afresh.
    """

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._tokens: dict[OAuth2Options, AccessToken] = {}
        self._pending: dict[OAuth2Options, asyncio.Task[AccessToken]] = {}

    async def token(self, oauth: OAuth2Options) -> AccessToken:
        token = self._tokens.get(oauth)
        if token is not None and (token.expires_at is None or time.monotonic() < token.expires_at):
            return token
        task = self._pending.get(oauth)
        if task is None:
            task = asyncio.create_task(self._fetch_and_keep(oauth))
            # read here too, so a failure every waiter was cancelled from is not "never retrieved"
            task.add_done_callback(_retrieve)
            self._pending[oauth] = task
        # shielded: one attempt cancelled (shutdown, its timeout) does not fail the others
        return await asyncio.shield(task)

    def invalidate(self, oauth: OAuth2Options, token: AccessToken) -> None:
        """Drop `token` after a receiver refused it, unless a newer one already replaced it
        (then concurrent 401s for the old token cause one fetch, not one each)."""
        if self._tokens.get(oauth) is token:
            del self._tokens[oauth]

    async def _fetch_and_keep(self, oauth: OAuth2Options) -> AccessToken:
        try:
            token = await self._fetch(oauth)
            if len(self._tokens) >= TOKENS_LIMIT:
                self._tokens.clear()
            self._tokens[oauth] = token
            return token
        finally:
            self._pending.pop(oauth, None)

    async def close(self) -> None:
        pending = list(self._pending.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._tokens.clear()


def _retrieve(task: asyncio.Task[AccessToken]) -> None:
    if not task.cancelled():
        task.exception()


async def request_token(
    session: aiohttp.ClientSession,
    oauth: OAuth2Options,
    *,
    timeout: aiohttp.ClientTimeout,
    proxy: str | None,
    user_agent: str,
) -> AccessToken:
    """One client-credentials exchange; TokenError for an answer that gives no token.

    Network trouble is raised as is (aiohttp.ClientError, OSError, TimeoutError) for the
    caller to explain alongside the receiver's own.
    """
    form = {"grant_type": "client_credentials"}
    if oauth.scope:
        form["scope"] = oauth.scope
    if oauth.audience:
        form["audience"] = oauth.audience
    headers = {"Accept": "application/json", "User-Agent": user_agent}
    if oauth.client_auth == "basic":
        headers["Authorization"] = _basic(oauth)
    else:
        form["client_id"] = oauth.client_id
        form["client_secret"] = oauth.client_secret
    started = time.monotonic()
    async with session.post(
        oauth.token_url,
        data=form,
        headers=headers,
        allow_redirects=False,
        timeout=timeout,
        proxy=proxy,
    ) as answer:
        body = await answer.content.read(TOKEN_RESPONSE_LIMIT)
        return _token_of(oauth, answer.status, body, started)


def _basic(oauth: OAuth2Options) -> str:
    """HTTP Basic as RFC 6749 §2.3.1 has it: id and secret form-urlencoded first (so a ":" in
    either survives), then joined by ":" and base64-encoded."""
    pair = f"{quote_plus(oauth.client_id)}:{quote_plus(oauth.client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _token_of(oauth: OAuth2Options, status: int, body: bytes, started: float) -> AccessToken:
    where = f"OAuth2 token endpoint {oauth.token_url}"
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        answer = None
    if not 200 <= status < 300:
        raise TokenError(f"{where} answered HTTP {status}{_server_reason(oauth, answer)}")
    if not isinstance(answer, dict):
        raise TokenError(f"{where} answered HTTP {status} without a JSON object")
    value = answer.get("access_token")
    if not isinstance(value, str) or not value or not value.isprintable() or not value.isascii():
        raise TokenError(f"{where} answered HTTP {status} without a usable access_token")
    token_type = answer.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenError(
            f"{where} issued a {str(token_type)[:20]!r} token; only Bearer tokens are supported"
        )
    return AccessToken(value, _expiry(answer.get("expires_in"), started))


def _expiry(expires_in: Any, started: float) -> float | None:
    """When to stop using a token: `EXPIRY_SKEW` before its end, counted from the request (the
    server's clock started then, at the latest). A lifetime shorter than twice the skew is cut
    to half, so a short-lived token is still used."""
    if isinstance(expires_in, str) and expires_in.strip().isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return None
    if not 0 < expires_in < 10**9:
        return None
    skew = min(EXPIRY_SKEW, expires_in / 2)
    return started + expires_in - skew


def _server_reason(oauth: OAuth2Options, answer: Any) -> str:
    """``: invalid_client (Client authentication failed)`` from an RFC 6749 §5.2 error
    answer, cut short and without control characters (or the secret, were it echoed)."""
    if not isinstance(answer, dict):
        return ""
    parts = [
        _clean(oauth, answer[key])
        for key in ("error", "error_description")
        if isinstance(answer.get(key), str) and answer[key].strip()
    ]
    if not parts:
        return ""
    head, *rest = parts
    return f": {head}" + (f" ({rest[0]})" if rest else "")


def _clean(oauth: OAuth2Options, text: str) -> str:
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    for secret in (oauth.client_secret,):
        text = text.replace(secret, "***")
    return text[:REASON_CHARS] + ("…" if len(text) > REASON_CHARS else "")
