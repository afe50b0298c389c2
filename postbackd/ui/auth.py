"""Sessions and CSRF tokens of the web UI: signed cookies that never carry the admin token.

A session cookie is ``KIND.ISSUED.NONCE.MAC``: KIND is ``u`` (logged in with the admin token)
or ``a`` (anonymous: the login form's own session, or every visitor when no token is set);
MAC is an HMAC-SHA256 under a key derived from the admin token *and* a secret this process
drew at start. So the cookie proves the token was known without revealing it (not even to an
offline guesser, who lacks the process secret); changing the token on reload logs everyone
out; so does a restart.

A logged-in session is also kept on the server (its nonce, in `SessionSigner`'s bounded table of
live sessions), so logging out ends it here: the cookie of a logged-out session is refused even
though its MAC is still good. When the table is full the oldest session is dropped (its user
logs in again): revocation never fails open.

The CSRF token of a session is an HMAC of its nonce under the same key: every form carries it
and every POST must send it back. The cookie is HttpOnly and SameSite=Strict, so another site
can neither read it nor make the browser send it along a cross-site POST.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from postbackd.web import same_secret

COOKIE = "postbackd_ui"
COOKIE_PATH = "/ui/"
LIFETIME = 12 * 3600.0
"""A session ends after this long even while in use (re-enter the token)."""
MAX_SESSIONS = 1000
"""Logged-in sessions kept at once; a login beyond it ends the oldest session."""

SessionKind = Literal["u", "a"]


@dataclass(frozen=True, slots=True)
class Session:
    kind: SessionKind
    issued: int
    nonce: str

    @property
    def logged_in(self) -> bool:
        return self.kind == "u"


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens for the admin token in force."""

    def __init__(
        self, process_secret: bytes | None = None, max_sessions: int = MAX_SESSIONS
    ) -> None:
        self._secret = process_secret or secrets.token_bytes(32)
        self._max_sessions = max_sessions
        self._live: OrderedDict[str, int] = OrderedDict()  # logged-in nonce → issued

    def issue(self, token: str | None, kind: SessionKind) -> tuple[Session, str]:
        """A fresh session (a new nonce: a login never keeps the pre-login session's).

        A logged-in one is recorded as live until `end`, expiry, or eviction by newer ones.
        """
        session = Session(kind, int(time.time()), secrets.token_urlsafe(18))
        if session.logged_in:
            self._open(session)
        payload = f"{session.kind}.{session.issued}.{session.nonce}"
        return session, f"{payload}.{self._mac(token, 'session.' + payload)}"

    def end(self, session: Session) -> None:
        """Log a session out on the server: its cookie is refused from now on."""
        self._live.pop(session.nonce, None)

    @property
    def live_sessions(self) -> int:
        return len(self._live)

    def _open(self, session: Session) -> None:
        expired_before = session.issued - LIFETIME
        while self._live and (
            len(self._live) >= self._max_sessions
            or next(iter(self._live.values())) < expired_before
        ):
            self._live.popitem(last=False)  # issue order: the oldest goes first
        self._live[session.nonce] = session.issued

    def read(
        self, token: str | None, cookie: str | None, now: float | None = None
    ) -> Session | None:
        """The session a cookie holds, or None when it is absent, forged, stale or expired."""
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or parts[0] not in ("u", "a") or not parts[1].isdigit():
            return None
        payload = ".".join(parts[:3])
        if not same_secret(parts[3], self._mac(token, "session." + payload)):
            return None
        issued = int(parts[1])
        if (time.time() if now is None else now) - issued > LIFETIME:
            return None
        if parts[0] == "u" and parts[2] not in self._live:
            return None  # logged out (or dropped from a full table): log in again
        kind: SessionKind = "u" if parts[0] == "u" else "a"
        return Session(kind, issued, parts[2])

    def csrf(self, token: str | None, session: Session) -> str:
        return self._mac(token, f"csrf.{session.kind}.{session.nonce}")

    def csrf_ok(self, token: str | None, session: Session, sent: str | None) -> bool:
        return bool(sent) and same_secret(str(sent), self.csrf(token, session))

    def _mac(self, token: str | None, message: str) -> str:
        key = hmac.new(self._secret, (token or "").encode(), hashlib.sha256).digest()
        digest = hmac.new(key, message.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


FREE_FAILURES = 4
"""Failed logins from one address before each further failure makes it wait."""
FIRST_DELAY = 1.0
MAX_DELAY = 300.0
"""The wait doubles with each failure beyond the free ones, up to this (seconds)."""
FORGET_AFTER = 3600.0
"""An address with no failed login for this long starts afresh."""
MAX_ADDRESSES = 10_000
"""Addresses remembered at once; beyond it the least recently failing one is forgotten."""


@dataclass(frozen=True, slots=True)
class LoginFailure:
    """What one failed login did to its address: failures so far and the wait it now has."""

    client: str
    failures: int
    retry_after: float


@dataclass(slots=True)
class _Strikes:
    failures: int
    last_failure: float
    blocked_until: float
    block_logged: bool = False


class LoginThrottle:
    """Slows down guessing the admin token at the login form, per client address.

    The first `FREE_FAILURES` wrong tokens from an address cost nothing (typos); each further
    one makes that address wait `FIRST_DELAY`, doubling up to `MAX_DELAY`, and while it waits
    its logins are refused with 429 *without comparing the token*, so waiting cannot be skipped
    by guessing faster. A right token resets the address. IPv6 clients count per /64 (one host
    usually has a whole /64 to pick addresses from). Memory is bounded by `MAX_ADDRESSES`
    (least recently failing forgotten first) and addresses quiet for `FORGET_AFTER` are dropped.

    The address is the TCP peer's: behind a reverse proxy every client shares the proxy's, so
    one guesser slows every login through it (never for longer than `MAX_DELAY`), which is the
    safe side.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        free_failures: int = FREE_FAILURES,
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self._clock = clock
        self._free = free_failures
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._max_addresses = max_addresses
        self._strikes: OrderedDict[str, _Strikes] = OrderedDict()

    def wait(self, address: str | None) -> float:
        """Seconds this address must still wait before a login is even compared (0: none)."""
        strikes = self._strikes.get(client_key(address))
        return 0.0 if strikes is None else max(0.0, strikes.blocked_until - self._clock())

    def first_refusal(self, address: str | None) -> bool:
        """True once per wait: whether a refused (throttled) login is worth a log line."""
        strikes = self._strikes.get(client_key(address))
        if strikes is None or strikes.block_logged:
            return False
        strikes.block_logged = True
        return True

    def failed(self, address: str | None) -> LoginFailure:
        """Count a wrong token from this address; the wait it now has."""
        now = self._clock()
        self._forget_quiet(now)
        key = client_key(address)
        strikes = self._strikes.pop(key, None) or _Strikes(0, now, now)
        strikes.failures += 1
        strikes.last_failure = now
        beyond = strikes.failures - self._free
        if beyond > 0:
            delay = min(self._max_delay, self._first_delay * 2 ** min(beyond - 1, 64))
            strikes.blocked_until = now + delay
            strikes.block_logged = False
        self._strikes[key] = strikes  # most recent last
        while len(self._strikes) > self._max_addresses:
            self._strikes.popitem(last=False)
        return LoginFailure(key, strikes.failures, max(0.0, strikes.blocked_until - now))

    def succeeded(self, address: str | None) -> None:
        """The right token: the address starts afresh."""
        self._strikes.pop(client_key(address), None)

    def __len__(self) -> int:
        return len(self._strikes)

    def _forget_quiet(self, now: float) -> None:
        while self._strikes:
            oldest = next(iter(self._strikes.values()))
            if now - max(oldest.last_failure, oldest.blocked_until) < FORGET_AFTER:
                break
            self._strikes.popitem(last=False)


def client_key(address: str | None) -> str:
    """The unit a login throttle counts: an IPv4 address, an IPv6 /64, or the raw peer name."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:100]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{parsed}/64", strict=False))
    return str(parsed)


def retry_after_header(seconds: float) -> str:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


def token_matches(token: str | None, sent: str) -> bool:
    """Whether the login form's value is the admin token (constant time)."""
    return token is not None and same_secret(sent.strip(), token)


def set_cookie(response: web.StreamResponse, request: web.Request, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=is_https(request),
        max_age=int(LIFETIME),
    )


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=COOKIE_PATH)


def is_https(request: web.Request) -> bool:
    """HTTPS here or at the reverse proxy in front (then the cookie is marked Secure)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path inside the UI, never another site."""
    if (
        target
        and target.startswith(COOKIE_PATH)
        and not any(bad in target for bad in ("//", "\\", "\r", "\n"))
    ):
        return target
    return COOKIE_PATH
