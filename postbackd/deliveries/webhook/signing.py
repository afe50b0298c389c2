"""Standard Webhooks signatures (https://www.standardwebhooks.com): what `webhook-signature` holds.

The signed content is ``f"{webhook-id}.{webhook-timestamp}."`` followed by the body bytes. A
symmetric secret signs ``v1,`` + base64(HMAC-SHA256(key, content)); an asymmetric one (the
spec's ``whsk_`` secret key) signs ``v1a,`` + base64(ed25519 signature of content), which the
receiver checks with the matching ``whpk_`` public key and cannot forge. Several secrets (a
rotation, or a move from HMAC to ed25519) give several signatures separated by spaces, so a
receiver holding either the old or the new key accepts the message.

``whsk_`` + base64 of the 32-byte ed25519 private key (RFC 8032's seed, what
``Ed25519PrivateKey.private_bytes_raw()`` gives; the 64-byte libsodium form, seed then public
key, is accepted too) is the asymmetric form, and ``whpk_`` + base64 of the 32-byte public key
is what the receiver is given (`public_key_of`). Ed25519 needs the `cryptography` package
(``pip install 'postbackd[ed25519]'``); without it a ``whsk_`` secret is a `check` error.

A symmetric secret is written in one of two forms:

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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SECRET_PREFIX = "whsec_"
SIGNING_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
ED25519_SEED_BYTES = 32


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


def is_signing_key(secret: str) -> bool:
    """Whether a secret is an ed25519 secret key (``whsk_``), which signs ``v1a``."""
    return secret.startswith(SIGNING_KEY_PREFIX)


@functools.lru_cache(maxsize=1024)  # a key object per secret, not per signature
def signing_key(secret: str) -> Ed25519PrivateKey:
    """The ed25519 private key a ``whsk_`` secret holds; a ValueError (never quoting it) if
    it is not one, or if the `cryptography` package that signs with it is missing."""
    encoded = secret[len(SIGNING_KEY_PREFIX) :]
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"a secret starting with {SIGNING_KEY_PREFIX!r} must be base64 after the prefix "
            "(an ed25519 secret key)"
        ) from None
    if len(raw) not in (ED25519_SEED_BYTES, 2 * ED25519_SEED_BYTES):
        raise ValueError(
            f"a {SIGNING_KEY_PREFIX} secret holds a 32-byte ed25519 private key (or 64 bytes: "
            f"key then public key); this one decodes to {len(raw)} bytes"
        )
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        raise ValueError(
            f"{SIGNING_KEY_PREFIX} secrets sign with ed25519, which needs the cryptography "
            "package: pip install 'postbackd[ed25519]'"
        ) from None
    key = Ed25519PrivateKey.from_private_bytes(raw[:ED25519_SEED_BYTES])
    if len(raw) > ED25519_SEED_BYTES and public_bytes(key) != raw[ED25519_SEED_BYTES:]:
        raise ValueError(
            f"this 64-byte {SIGNING_KEY_PREFIX} secret's second half is not the public key of "
            "its first half; give the 32-byte private key alone"
        )
    return key


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_of(secret: str) -> str:
    """The ``whpk_`` public key a receiver needs to verify what a ``whsk_`` secret signs."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(public_bytes(signing_key(secret))).decode()


def check_secret(secret: str) -> None:
    """Raise a ValueError (never quoting the secret) if it cannot sign."""
    if is_signing_key(secret):
        signing_key(secret)
    else:
        secret_key(secret)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature of a message for one secret: ``v1,<base64>`` (HMAC-SHA256), or
    ``v1a,<base64>`` (ed25519) for a ``whsk_`` secret key."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    if is_signing_key(secret):
        return "v1a," + base64.b64encode(signing_key(secret).sign(content)).decode("ascii")
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per secret, separated by spaces."""
    if isinstance(secrets, str):
        secrets = [secrets]
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)
