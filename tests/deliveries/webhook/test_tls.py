"""Mutual TLS against a real aiohttp HTTPS server on 127.0.0.1 that requires a client
certificate; the CA, server and client certificates are made by the test (`tests.certs`)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from postbackd.config.model import Config
from postbackd.deliveries.webhook import WebhookDelivery
from postbackd.deliveries.webhook.delivery import _explain
from postbackd.deliveries.webhook.options import WebhookOptions
from postbackd.deliveries.webhook.tls import TlsOptions, check_files
from postbackd.plugin import OutcomeKind, PluginContext
from postbackd.testing import WebhookReceiver
from tests.certs import PASSPHRASE, Pki, make_pki
from tests.deliveries.webhook.test_delivery import DELIVERY, make_config


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_receiver(pki: Pki) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(ssl_context=pki.server_context()).start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def config(tmp_path: Path) -> list[Config]:
    return [make_config(tmp_path, allow_private_destinations=True)]


@pytest.fixture
async def webhook(config: list[Config]) -> AsyncIterator[WebhookDelivery]:
    plugin = WebhookDelivery({}, context=PluginContext(config=lambda: config[0]))
    try:
        yield plugin
    finally:
        await plugin.close()


def tls_options(pki: Pki, **tls: Any) -> dict[str, Any]:
    return {
        "client_cert": str(pki.client_cert),
        "client_key": str(pki.client_key),
        "ca": str(pki.ca),
        **tls,
    }


async def test_the_client_certificate_is_presented_and_the_receiver_verified(
    webhook: WebhookDelivery, tls_receiver: WebhookReceiver, pki: Pki
) -> None:
    options = {"url": tls_receiver.url(), "tls": tls_options(pki)}
    assert webhook.validate_options(options) == []
    outcome = await webhook.deliver(DELIVERY, options)
    assert outcome.kind is OutcomeKind.OK, outcome.error
    [got] = tls_receiver.requests
    assert got.body == DELIVERY.body


async def test_without_a_client_certificate_the_receiver_refuses_and_the_log_says_why(
    webhook: WebhookDelivery, tls_receiver: WebhookReceiver, pki: Pki
) -> None:
    outcome = await webhook.deliver(
        DELIVERY, {"url": tls_receiver.url(), "tls": {"ca": str(pki.ca)}}
    )
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error is not None and "client certificate" in outcome.error, outcome.error
    assert outcome.response is not None and outcome.response["error"] == outcome.error
    assert tls_receiver.requests == []


async def test_a_receiver_on_a_private_ca_is_refused_without_that_ca(
    webhook: WebhookDelivery, tls_receiver: WebhookReceiver, pki: Pki
) -> None:
    tls = tls_options(pki)
    del tls["ca"]
    outcome = await webhook.deliver(DELIVERY, {"url": tls_receiver.url(), "tls": tls})
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error is not None and "certificate" in outcome.error
    assert "not accepted" in outcome.error, outcome.error
    assert tls_receiver.requests == []


async def test_an_encrypted_key_with_its_passphrase(
    webhook: WebhookDelivery, tls_receiver: WebhookReceiver, pki: Pki
) -> None:
    tls = tls_options(pki, client_key=str(pki.encrypted_client_key), key_password=PASSPHRASE)
    options = {"url": tls_receiver.url(), "tls": tls}
    assert webhook.validate_options(options) == []
    assert (await webhook.deliver(DELIVERY, options)).succeeded


def test_check_names_the_file_and_what_is_wrong(pki: Pki, tmp_path: Path) -> None:
    def problems(**tls: Any) -> list[str]:
        options = {"client_cert": pki.client_cert, "client_key": pki.client_key, **tls}
        return check_files(TlsOptions(**options))

    missing = tmp_path / "nope.pem"
    assert problems(client_cert=missing) == [f"options.tls.client_cert: file not found: {missing}"]
    assert problems(client_key=tmp_path) == [
        f"options.tls.client_key: is a directory, not a file: {tmp_path}"
    ]
    [mismatch] = problems(client_key=pki.other_key)
    assert mismatch.startswith("options.tls.client_key: ") and "is not the key of" in mismatch
    [encrypted] = problems(client_key=pki.encrypted_client_key)
    assert encrypted.startswith("options.tls.client_key: ") and "is encrypted; give" in encrypted
    [wrong] = problems(client_key=pki.encrypted_client_key, key_password="not it")
    assert wrong.startswith("options.tls.key_password: the passphrase does not decrypt")
    assert "not it" not in wrong
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    [bad_cert] = problems(client_cert=garbage)
    assert bad_cert == f"options.tls.client_cert: {garbage} holds no PEM certificate " + (
        "(-----BEGIN CERTIFICATE)"
    )
    [bad_key] = problems(client_key=garbage)
    assert bad_key == f"options.tls.client_key: {garbage} holds no PEM private key"
    [bad_ca] = check_files(TlsOptions(ca=garbage))
    assert bad_ca.startswith(f"options.tls.ca: {garbage} holds no usable PEM CA certificate")
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)  # opening it would block until a writer came: it is never opened
    assert problems(client_cert=fifo) == [f"options.tls.client_cert: not a regular file: {fifo}"]
    if os.geteuid() != 0:
        unreadable = tmp_path / "unreadable.key"
        shutil.copy(pki.client_key, unreadable)
        unreadable.chmod(0)
        [denied] = problems(client_key=unreadable)
        assert denied.startswith("options.tls.client_key: permission denied reading")


@pytest.mark.parametrize(
    ("tls", "problem"),
    [
        ("x", "options.tls: expected a table"),
        ({}, "options.tls: empty"),
        ({"client_cert": "certs/a.pem"}, "options.tls.client_cert: 'certs/a.pem' is relative"),
        ({"client_key": "/k.pem"}, "options.tls.client_key: given without client_cert"),
        ({"ca": "/ca.pem", "cert": "/c.pem"}, "options.tls.cert: unknown TLS option"),
        ({"client_cert": "/c.pem", "key_password": ""}, "options.tls.key_password: expected"),
    ],
)
def test_tls_option_shapes(webhook: WebhookDelivery, tls: Any, problem: str) -> None:
    errors = webhook.validate_options({"url": "https://example.com/hook", "tls": tls})
    assert any(e.startswith(problem) for e in errors), errors


def test_tls_over_plain_http_is_refused(webhook: WebhookDelivery, pki: Pki) -> None:
    errors = webhook.validate_options({"url": "http://example.com/", "tls": {"ca": str(pki.ca)}})
    assert errors == [
        "options.tls: the url is http://, so no TLS is spoken; use an https:// url or remove "
        "the tls table"
    ]


async def test_a_certificate_renewed_in_place_is_used_after_a_reload(
    webhook: WebhookDelivery, tls_receiver: WebhookReceiver, pki: Pki, tmp_path: Path
) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    shutil.copy(pki.client_cert, cert)
    shutil.copy(pki.other_key, key)  # a broken pair first: the context cannot be built
    tls = {"client_cert": str(cert), "client_key": str(key), "ca": str(pki.ca)}
    first = await webhook.deliver(DELIVERY, {"url": tls_receiver.url(), "tls": dict(tls)})
    assert first.kind is OutcomeKind.RETRY and first.breaker is False
    assert first.error is not None and "is not the key of" in first.error
    shutil.copy(pki.client_key, key)  # fixed in place; a reload builds new option mappings
    second = await webhook.deliver(DELIVERY, {"url": tls_receiver.url(), "tls": dict(tls)})
    assert second.succeeded, second.error


@pytest.mark.parametrize(
    "refusal",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"),
    ],
)
def test_a_refusal_after_the_handshake_is_explained_however_it_arrives(
    refusal: Exception,
) -> None:
    """TLS 1.3 refuses a missing client certificate after the handshake; the close reaches
    aiohttp as a disconnect or as a reset, depending on timing — both get the hint."""
    without, _ = WebhookOptions.parse({"url": "https://receiver.example/hook"})
    assert without is not None
    message, permanent = _explain(refusal, without)
    assert "client certificate" in message and not permanent, message
    plain, _ = WebhookOptions.parse({"url": "http://receiver.example/hook"})
    assert plain is not None
    assert "client certificate" not in _explain(refusal, plain)[0]
