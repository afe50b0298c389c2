"""Signatures checked by the independent `standardwebhooks` reference implementation."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from postbackd.deliveries.webhook.signing import secret_key, sign, signature_header

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
