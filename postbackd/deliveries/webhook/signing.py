"""Standard Webhooks signatures (https://www.standardwebhooks.com): what `webhook-signature` holds.

The signed content is ``f"{webhook-id}.{webhook-timestamp}."`` followed by the body bytes; the
signature is ``v1,`` + base64(HMAC-SHA256(key, content)). Several secrets (a rotation) give
several signatures separated by spaces, so a receiver holding either the old or the new secret
accepts the message.

A secret is written in one of two forms:

- ``whsec_`` + base64 — the form Standard Webhooks libraries generate and expect; the key is the
  base64-decoded remainder (missing ``=`` padding is tolerated, as those libraries do).
- any other string — used as its UTF-8 bytes, unchanged. Note that Standard Webhooks libraries
  base64-decode a string without the prefix, so a receiver using one must pass such a secret as
  bytes (``Webhook(secret.encode())``) — or the PSP writes it as ``whsec_`` + base64 instead.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"


@functools.lru_cache(maxsize=4096)  # decoded once per secret, not per signature
def secret_key(secret: str) -> bytes:
    """The HMAC key a secret stands for; a ValueError (never quoting the secret) if unusable."""
    if not secret:
        raise ValueError("the secret is empty")
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"a secret starting with {SECRET_PREFIX!r} must be base64 after the prefix; "
            f"write the key as {SECRET_PREFIX}<base64>, or drop the prefix to use the text as is"
        ) from None
    if not key:
        raise ValueError(f"the secret has no key after {SECRET_PREFIX!r}")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature, ``v1,<base64>``, of a message for one secret."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per secret, separated by spaces."""
    if isinstance(secrets, str):
        secrets = [secrets]
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)
