"""Signatures checked by the independent `standardwebhooks` reference implementation."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from postbackd.deliveries.webhook.signing import (
    check_secret,
    public_key_of,
    secret_key,
    sign,
    signature_header,
    signing_key,
)

BODY = b'{"orderId": "o-1", "note": "caf\xc3\xa9"}'
WHSEC = "whsec_" + base64.b64encode(b"k" * 32).decode()


def _headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_whsec_secret_verifies_with_the_reference_library() -> None:
    now = int(time.time())
    signature = sign(WHSEC, "msg_1", now, BODY)
    assert signature.startswith("v1,")
    Webhook(WHSEC).verify(BODY, _headers("msg_1", now, signature))


def test_whsec_secret_decodes_to_its_base64_key_even_unpadded() -> None:
    assert secret_key(WHSEC) == b"k" * 32
    assert secret_key(WHSEC.rstrip("=")) == b"k" * 32


def test_plain_secret_is_used_as_its_bytes() -> None:
    now = int(time.time())
    signature = sign("correct horse battery staple", "msg_2", now, BODY)
    assert secret_key("correct horse battery staple") == b"correct horse battery staple"
    Webhook(b"correct horse battery staple").verify(BODY, _headers("msg_2", now, signature))


def test_two_secrets_give_two_signatures_each_verifying() -> None:
    other = "whsec_" + base64.b64encode(b"n" * 24).decode()
    now = int(time.time())
    header = signature_header([WHSEC, other], "msg_3", now, BODY)
    assert len(header.split(" ")) == 2
    for secret in (WHSEC, other):
        Webhook(secret).verify(BODY, _headers("msg_3", now, header))


def test_a_changed_body_or_id_does_not_verify() -> None:
    now = int(time.time())
    signature = sign(WHSEC, "msg_4", now, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(WHSEC).verify(BODY + b" ", _headers("msg_4", now, signature))
    with pytest.raises(WebhookVerificationError):
        Webhook(WHSEC).verify(BODY, _headers("msg_5", now, signature))


def test_single_secret_header_is_one_signature() -> None:
    assert signature_header(WHSEC, "m", 1, b"x") == sign(WHSEC, "m", 1, b"x")


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_not base64!", "whsec_====="])
def test_unusable_secrets_are_refused_without_quoting_them(secret: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        secret_key(secret)
    if len(secret) > len("whsec_"):
        assert secret[6:] not in str(excinfo.value)


# Asymmetric (v1a): standardwebhooks 1.3 verifies v1 only, so the ed25519 signature is checked
# with `cryptography` directly against the spec's layout: "{id}.{timestamp}.{body}".
SIGNING_SEED = bytes(range(32))


def _whsk(raw: bytes = SIGNING_SEED) -> str:
    return "whsk_" + base64.b64encode(raw).decode()


def _verify_v1a(public: str, msg_id: str, timestamp: int, body: bytes, header: str) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    assert public.startswith("whpk_")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public.removeprefix("whpk_")))
    [signature] = [s for s in header.split(" ") if s.startswith("v1a,")]
    key.verify(
        base64.b64decode(signature.removeprefix("v1a,")), f"{msg_id}.{timestamp}.".encode() + body
    )


def test_whsk_secret_signs_v1a_verified_with_the_public_key() -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    now = int(time.time())
    signature = sign(_whsk(), "msg_1", now, BODY)
    assert signature.startswith("v1a,") and len(base64.b64decode(signature[4:])) == 64
    expected_public = (
        Ed25519PrivateKey.from_private_bytes(SIGNING_SEED)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    public = public_key_of(_whsk())
    assert public == "whpk_" + base64.b64encode(expected_public).decode()
    _verify_v1a(public, "msg_1", now, BODY, signature)
    with pytest.raises(InvalidSignature):
        _verify_v1a(public, "msg_1", now, BODY + b" ", signature)
    with pytest.raises(InvalidSignature):
        _verify_v1a(public, "msg_2", now, BODY, signature)


def test_v1a_beside_v1_each_verifies() -> None:
    now = int(time.time())
    header = signature_header([WHSEC, _whsk()], "msg_3", now, BODY)
    v1, v1a = header.split(" ")
    assert v1.startswith("v1,") and v1a.startswith("v1a,")
    Webhook(WHSEC).verify(BODY, _headers("msg_3", now, header))
    _verify_v1a(public_key_of(_whsk()), "msg_3", now, BODY, header)


def test_the_64_byte_libsodium_form_is_accepted_when_its_halves_match() -> None:
    public = base64.b64decode(public_key_of(_whsk()).removeprefix("whpk_"))
    assert sign(_whsk(SIGNING_SEED + public), "m", 1, BODY) == sign(_whsk(), "m", 1, BODY)
    with pytest.raises(ValueError, match="second half is not the public key"):
        check_secret(_whsk(SIGNING_SEED + bytes(32)))


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("whsk_***", "must be base64 after the prefix"),
        ("whsk_" + base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
    ],
)
def test_bad_whsk_secrets_are_refused_without_quoting_them(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        check_secret(secret)
    assert secret.removeprefix("whsk_") not in str(caught.value)


def test_without_cryptography_a_whsk_secret_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    signing_key.cache_clear()
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric.ed25519", None)
    try:
        with pytest.raises(ValueError, match=r"pip install 'postbackd\[ed25519\]'"):
            check_secret(_whsk())
    finally:
        signing_key.cache_clear()
