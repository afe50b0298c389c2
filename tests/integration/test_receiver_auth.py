"""Receiver authentication through a real daemon: mutual TLS against an HTTPS receiver that
requires a client certificate, OAuth2 client credentials against a real token endpoint, and
ed25519 (v1a) signatures checked with the public key alone (issue 17, item 9)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook

from postbackd.deliveries.webhook.signing import public_key_of
from postbackd.testing import PostbackdDaemon, WebhookReceiver, event_payload
from tests.certs import Pki, make_pki
from tests.faults.daemon_checks import assert_still_ready, check, no_traceback

WHSEC = "whsec_" + base64.b64encode(b"h" * 32).decode()
WHSK = "whsk_" + base64.b64encode(bytes(range(100, 132))).decode()
CLIENT_SECRET = "oauth-client-secret-0f9e8d"


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


def verify_v1a(request: Any) -> None:
    public = base64.b64decode(public_key_of(WHSK).removeprefix("whpk_"))
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}."
    [v1a] = [s for s in request.headers["webhook-signature"].split(" ") if s.startswith("v1a,")]
    Ed25519PublicKey.from_public_bytes(public).verify(
        base64.b64decode(v1a.removeprefix("v1a,")), signed.encode() + request.body
    )


async def test_mutual_tls_delivers_with_the_client_certificate_and_not_without(
    postbackd_daemon: Callable[..., PostbackdDaemon], tls_receiver: WebhookReceiver, pki: Pki
) -> None:
    tls = {"client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
    daemon = postbackd_daemon(
        triggers=[
            {
                "name": "with-cert",
                "delivery": "webhook",
                "options": {
                    "url": tls_receiver.url("/with"),
                    "secret": [WHSEC, WHSK],
                    "tls": {**tls, "ca": str(pki.ca)},
                },
            },
            {
                "name": "without-cert",
                "delivery": "webhook",
                "retry": False,
                "options": {"url": tls_receiver.url("/without"), "tls": {"ca": str(pki.ca)}},
            },
        ],
    )
    code, said = check(daemon)
    assert code == 0, said
    await daemon.start()
    await daemon.submit(event_payload("evt-mtls-1"))
    finals = {d["trigger"]: d for d in await daemon.wait_for_deliveries(2)}
    assert finals["with-cert"]["state"] == "done", finals
    assert finals["without-cert"]["state"] == "dead", finals
    assert "client certificate" in finals["without-cert"]["last_error"], finals
    detail = await daemon.delivery(finals["without-cert"]["id"])
    assert "client certificate" in json.dumps(detail["attempts"]), detail
    [got] = tls_receiver.requests
    assert got.path == "/with"
    Webhook(WHSEC).verify(got.body, got.headers)
    verify_v1a(got)
    await assert_still_ready(daemon)
    assert no_traceback(daemon.logs())


async def test_check_reports_a_mismatched_key_at_its_line(
    postbackd_daemon: Callable[..., PostbackdDaemon], pki: Pki
) -> None:
    daemon = postbackd_daemon(
        triggers=[
            {
                "name": "mismatched",
                "delivery": "webhook",
                "options": {
                    "url": "https://127.0.0.1:9/hook",
                    "tls": {"client_cert": str(pki.client_cert), "client_key": str(pki.other_key)},
                },
            }
        ],
    )
    code, said = check(daemon)
    assert code != 0
    lines = (daemon.conf_dir / "postbackd.toml").read_text().splitlines()
    key_line = next(i for i, line in enumerate(lines, 1) if line.startswith("client_key = "))
    assert f"postbackd.toml:{key_line}: " in said, said
    assert "options.tls.client_key: " in said and "is not the key of the certificate" in said
    assert no_traceback(said)


class TokenEndpoint:
    """A real token endpoint: counts requests; answers garbage while `broken`."""

    def __init__(self) -> None:
        self.requests = 0
        self.broken = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        form = await request.post()
        expected = "Basic " + base64.b64encode(f"postbackd:{CLIENT_SECRET}".encode()).decode()
        if self.broken:
            return web.Response(status=200, body=b"\xff\x00<html>" * 20_000)
        if request.headers.get("Authorization") != expected or form.get("scope") != "orders":
            return web.json_response({"error": "invalid_client"}, status=401)
        return web.json_response(
            {"access_token": f"tok-{self.requests}", "token_type": "Bearer", "expires_in": 3600}
        )


async def test_oauth2_token_cached_refetched_once_on_401_and_never_logged(
    postbackd_daemon: Callable[..., PostbackdDaemon], webhook_receiver: WebhookReceiver
) -> None:
    endpoint = TokenEndpoint()
    webhook_receiver.handle("POST", "/token", endpoint.handle)
    accepted = {"tok-1"}

    async def hook(request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return web.Response(status=200 if token in accepted else 401)

    webhook_receiver.handle("POST", "/hook", hook)
    daemon = postbackd_daemon(
        env={"ACME_OAUTH_SECRET": CLIENT_SECRET},
        triggers=[
            {
                "name": "oauth",
                "delivery": "webhook",
                "options": {
                    "url": webhook_receiver.url("/hook"),
                    "oauth2": {
                        "token_url": webhook_receiver.url("/token"),
                        "client_id": "postbackd",
                        "client_secret": "${env:ACME_OAUTH_SECRET}",
                        "scope": "orders",
                    },
                },
            }
        ],
    )
    code, said = check(daemon, {"ACME_OAUTH_SECRET": CLIENT_SECRET})
    assert code == 0, said
    await daemon.start()
    await daemon.submit(*(event_payload(f"evt-oauth-{i}") for i in range(3)))
    await daemon.wait_for_deliveries(3, states=("done",))
    assert endpoint.requests == 1

    accepted = {"tok-2"}  # the receiver revoked the first token
    await daemon.submit(event_payload("evt-oauth-revoked"))
    await daemon.wait_for_deliveries(4, states=("done",))
    assert endpoint.requests == 2
    hooks = [r.headers["Authorization"] for r in webhook_receiver.requests if r.path == "/hook"]
    assert hooks == ["Bearer tok-1"] * 4 + ["Bearer tok-2"]

    # hostile: a token endpoint answering garbage fails attempts with a reason, loses nothing
    endpoint.broken, accepted = True, set()
    await daemon.submit(event_payload("evt-oauth-garbage"))
    await daemon.wait_for_deliveries(5, timeout=20)  # the 401 drops tok-2, the refetch fails
    [failed] = [d for d in await daemon.deliveries() if d["state"] != "done"]
    assert failed["state"] == "dead" and "without a JSON object" in failed["last_error"], failed
    await assert_still_ready(daemon)  # its event, too, waits for a token
    endpoint.broken, accepted = False, {f"tok-{n}" for n in range(100)}
    await daemon.wait_for_deliveries(6, timeout=20)
    for delivery in await daemon.deliveries():
        if delivery["state"] != "done":
            status, answer = await daemon.request("POST", f"/v1/deliveries/{delivery['id']}/retry")
            assert status in (200, 202), answer
    await daemon.wait_for_deliveries(6, states=("done",), timeout=20)

    everything = daemon.logs() + json.dumps(
        [await daemon.delivery(d["id"]) for d in await daemon.deliveries()]
    )
    assert CLIENT_SECRET not in everything
    assert "tok-1" not in everything and "tok-2" not in everything
    assert no_traceback(daemon.logs())


async def test_check_connect_does_the_handshake_and_fetches_a_token(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    tls_receiver: WebhookReceiver,
    webhook_receiver: WebhookReceiver,
    pki: Pki,
) -> None:
    endpoint = TokenEndpoint()
    webhook_receiver.handle("POST", "/token", endpoint.handle)
    oauth2 = {
        "token_url": webhook_receiver.url("/token"),
        "client_id": "postbackd",
        "client_secret": "${env:ACME_OAUTH_SECRET}",
        "scope": "orders",
    }
    tls = {"client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
    daemon = postbackd_daemon(
        triggers=[
            {
                "name": "mtls",
                "delivery": "webhook",
                "options": {"url": tls_receiver.url(), "tls": {**tls, "ca": str(pki.ca)}},
            },
            {
                "name": "untrusted",
                "delivery": "webhook",
                "options": {"url": tls_receiver.url(), "tls": tls},  # no ca: private CA refused
            },
            {
                "name": "oauth",
                "delivery": "webhook",
                "options": {"url": webhook_receiver.url("/hook"), "oauth2": oauth2},
            },
        ],
    )
    code, said = check(daemon, {"ACME_OAUTH_SECRET": CLIENT_SECRET})
    assert code == 0, said
    daemon.env["ACME_OAUTH_SECRET"] = CLIENT_SECRET
    done = daemon.command("check", "--connect")
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "ok   tls     " in said and "[trigger mtls]: handshake done, client certificate" in said
    assert "FAIL tls     " in said and "[trigger untrusted]: handshake failed: " in said, said
    assert "CERTIFICATE_VERIFY_FAILED" in said or "certificate verify failed" in said, said
    assert "ok   oauth2  " in said and "[trigger oauth]: token issued (used for" in said, said
    assert endpoint.requests == 1
    daemon.env["ACME_OAUTH_SECRET"] = "wrong"
    done = daemon.command("check", "--connect")
    assert "FAIL oauth2  " in done.stdout and "answered HTTP 401: invalid_client" in done.stdout
    assert CLIENT_SECRET not in done.stdout + done.stderr
    assert no_traceback(done.stdout + done.stderr)
