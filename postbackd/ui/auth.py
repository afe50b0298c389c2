"""Sessions and CSRF tokens of the web UI: signed cookies that never carry the admin token.

A session cookie is ``KIND.ISSUED.NONCE.MAC``: KIND is ``u`` (logged in with the admin token)
or ``a`` (anonymous: the login form's own session, or every visitor when no token is set);
MAC is an HMAC-SHA256 under a key derived from the admin token *and* a secret this process
drew at start. So the cookie proves the token was known without revealing it (not even to an
offline guesser, who lacks the process secret); changing the token on reload logs everyone
out; so does a restart.

The CSRF token of a session is an HMAC of its nonce under the same key: every form carries it
and every POST must send it back. The cookie is HttpOnly and SameSite=Strict, so another site
can neither read it nor make the browser send it along a cross-site POST.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from postbackd.web import same_secret

COOKIE = "postbackd_ui"
COOKIE_PATH = "/ui/"
LIFETIME = 12 * 3600.0
"""A session ends after this long even while in use (re-enter the token)."""

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

    def __init__(self, process_secret: bytes | None = None) -> None:
        self._secret = process_secret or secrets.token_bytes(32)

    def issue(self, token: str | None, kind: SessionKind) -> tuple[Session, str]:
        """A fresh session (a new nonce: a login never keeps the pre-login session's)."""
        session = Session(kind, int(time.time()), secrets.token_urlsafe(18))
        payload = f"{session.kind}.{session.issued}.{session.nonce}"
        return session, f"{payload}.{self._mac(token, 'session.' + payload)}"

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
