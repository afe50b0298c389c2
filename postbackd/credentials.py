"""Comparing a credential a client sent with the one configured, whatever bytes it holds.

`hmac.compare_digest` raises TypeError for a str that is not ASCII, so a bearer token, a session
cookie or a CSRF field with one "é" in it was a 500 with a traceback per request. Both sides are
compared as UTF-8 bytes instead (lone surrogates kept apart by ``surrogatepass``, so they can
never equal a real token's bytes): a non-ASCII credential is simply a wrong one — a 401.
"""

from __future__ import annotations

import hmac


def _utf8(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def same_secret(sent: str, expected: str) -> bool:
    """Whether `sent` equals `expected`, in constant time for equal lengths; never raises."""
    return hmac.compare_digest(_utf8(sent), _utf8(expected))
