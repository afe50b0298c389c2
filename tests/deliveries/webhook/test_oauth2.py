"""OAuth2 client credentials against a real aiohttp token endpoint and receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from postbackd.config.model import Config
from postbackd.deliveries.webhook import WebhookDelivery
from postbackd.deliveries.webhook.oauth2 import EXPIRY_SKEW
from postbackd.plugin import OutcomeKind, PluginContext
from postbackd.testing import WebhookReceiver
from tests.deliveries.webhook.test_delivery import DELIVERY, make_config

CLIENT_SECRET = "s3cr3t-client-secret-value"


@dataclass
class TokenEndpoint:
    """Issues tok-1, tok-2, … to the right client; counts requests; can be scripted."""

    receiver: WebhookReceiver
    expires_in: Any = 3600
    status: int = 200
    answer: Any = None  # a body to answer instead of a token
    delay: float = 0.0
    forms: list[dict[str, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.receiver.url("/token")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.forms.append(form)
        self.authorizations.append(request.headers.get("Authorization"))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.answer is not None:
            return web.Response(status=self.status, text=self.answer)
        expected = "Basic " + base64.b64encode(f"postbackd:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected and form.get("client_secret") != (
            CLIENT_SECRET
        ):
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                status=401,
            )
        body: dict[str, Any] = {"access_token": f"tok-{len(self.forms)}", "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return web.json_response(body, status=self.status)


@pytest.fixture
def peers() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def endpoint(peers: WebhookReceiver) -> TokenEndpoint:
    endpoint = TokenEndpoint(peers)
    peers.handle("POST", "/token", endpoint.handle)
    return endpoint


@pytest.fixture
def accepted(peers: WebhookReceiver) -> list[str]:
    """The receiver at /hook accepts the tokens in this list and answers 401 to others."""
    tokens: list[str] = []

    async def hook(request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return web.Response(status=200 if token in tokens else 401, text="hook")

    peers.handle("POST", "/hook", hook)
    return tokens


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


def options(peers: WebhookReceiver, endpoint: TokenEndpoint, **oauth2: Any) -> dict[str, Any]:
    table = {
        "token_url": endpoint.url,
        "client_id": "postbackd",
        "client_secret": CLIENT_SECRET,
        "scope": "orders.write",
        **oauth2,
    }
    return {"url": peers.url("/hook"), "oauth2": table}


def hook_tokens(peers: WebhookReceiver) -> list[str]:
    return [r.headers.get("Authorization", "") for r in peers.requests if r.path == "/hook"]


async def test_the_token_is_fetched_once_and_sent_as_bearer(
    webhook: WebhookDelivery, peers: WebhookReceiver, endpoint: TokenEndpoint, accepted: list[str]
) -> None:
    accepted.append("tok-1")
    opts = options(peers, endpoint, audience="https://erp.example")
    assert webhook.validate_options(opts) == []
    for _ in range(3):
        outcome = await webhook.deliver(DELIVERY, opts)
        assert outcome.succeeded, outcome.error
    assert endpoint.forms == [
        {
            "grant_type": "client_credentials",
            "scope": "orders.write",
            "audience": "https://erp.example",
        }
    ]
    assert hook_tokens(peers) == ["Bearer tok-1"] * 3
    assert outcome.request is not None
    assert outcome.request["headers"]["Authorization"] == "***"


async def test_a_token_the_receiver_echoes_is_masked_in_the_request_log(
    webhook: WebhookDelivery, peers: WebhookReceiver, endpoint: TokenEndpoint
) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        return web.Response(status=403, text=f"token {token} lacks a scope", headers={"X-T": token})

    peers.handle("POST", "/hook", echo)
    outcome = await webhook.deliver(DELIVERY, options(peers, endpoint))
    assert outcome.kind is OutcomeKind.RETRY and outcome.status == 403
    assert outcome.response is not None
    assert outcome.response["body"] == "token *** lacks a scope"
    assert outcome.response["headers"]["X-T"] == "***"


async def test_a_slow_token_endpoint_ends_the_attempt_within_its_timeout(
    webhook: WebhookDelivery, peers: WebhookReceiver, endpoint: TokenEndpoint, accepted: list[str]
) -> None:
    endpoint.delay = 3.0
    opts = {**options(peers, endpoint), "timeout": "500ms"}
    outcome = await asyncio.wait_for(webhook.deliver(DELIVERY, opts), 2.5)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error == f"timed out after 0.5s waiting for an OAuth2 token and {peers.url()}"
    assert hook_tokens(peers) == []


async def test_concurrent_attempts_share_one_token_request(
    webhook: WebhookDelivery, peers: WebhookReceiver, endpoint: TokenEndpoint, accepted: list[str]
) -> None:
    accepted.append("tok-1")
    endpoint.delay = 0.2
    opts = options(peers, endpoint)
    outcomes = await asyncio.gather(*(webhook.deliver(DELIVERY, opts) for _ in range(10)))
    assert all(o.succeeded for o in outcomes)
    assert len(endpoint.forms) == 1


async def test_an_expired_token_is_fetched_again(
    webhook: WebhookDelivery, peers: WebhookReceiver, endpoint: TokenEndpoint, accepted: list[str]
) -> None:
    accepted.extend(["tok-1", "tok-2"])
    endpoint.expires_in = 1  # shorter than twice the skew: used for half its life
    assert EXPIRY_SKEW > 1
    opts = options(peers, endpoint)
    assert (await webhook.deliver(DELIVERY, opts)).succeeded
    assert (await webhook.deliver(DELIVERY, opts)).succeeded
    await asyncio.sleep(0.6)
    assert (await webhook.deliver(DELIVERY, opts)).succeeded
    assert len(endpoint.forms) == 2
    assert hook_tokens(peers) == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


async def test_a_401_fetches_a_new_token_once_then_sends_again(
    webhook: WebhookDelivery, peers: WebhookReceiver, endpoint: TokenEndpoint, accepted: list[str]
) -> None:
    accepted.append("tok-2")  # the first token was revoked
    outcome = await webhook.deliver(DELIVERY, options(peers, endpoint))
    assert outcome.succeeded, outcome.error
    assert hook_tokens(peers) == ["Bearer tok-1", "Bearer tok-2"]
    assert len(endpoint.forms) == 2


async def test_a_second_401_is_the_attempts_failure_not_a_loop(
    webhook: WebhookDelivery, peers: WebhookReceiver, endpoint: TokenEndpoint, accepted: list[str]
) -> None:
    outcome = await webhook.deliver(DELIVERY, options(peers, endpoint))
    assert outcome.kind is OutcomeKind.RETRY and outcome.status == 401
    assert len(endpoint.forms) == 2 and len(hook_tokens(peers)) == 2


async def test_client_auth_post_sends_the_credentials_in_the_form(
    webhook: WebhookDelivery, peers: WebhookReceiver, endpoint: TokenEndpoint, accepted: list[str]
) -> None:
    accepted.append("tok-1")
    outcome = await webhook.deliver(DELIVERY, options(peers, endpoint, client_auth="post"))
    assert outcome.succeeded, outcome.error
    assert endpoint.authorizations == [None]
    assert endpoint.forms[0]["client_id"] == "postbackd"


@pytest.mark.parametrize(
    ("status", "answer", "reason"),
    [
        (401, None, "answered HTTP 401: invalid_client (Client authentication failed)"),
        (200, "not json", "answered HTTP 200 without a JSON object"),
        (200, '{"token_type": "Bearer"}', "without a usable access_token"),
        (200, '{"access_token": "x", "token_type": "mac"}', "only Bearer tokens are supported"),
        (500, "x" * 100_000, "answered HTTP 500"),
        (400, json.dumps({"error": f"bad {CLIENT_SECRET}\r\nX: y"}), "answered HTTP 400: bad ***"),
    ],
)
async def test_token_endpoint_errors_fail_the_attempt_with_the_reason(
    webhook: WebhookDelivery,
    peers: WebhookReceiver,
    endpoint: TokenEndpoint,
    accepted: list[str],
    status: int,
    answer: str | None,
    reason: str,
) -> None:
    endpoint.status, endpoint.answer = status, answer
    secret = "wrong" if answer is None else CLIENT_SECRET
    outcome = await webhook.deliver(DELIVERY, options(peers, endpoint, client_secret=secret))
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error is not None and reason in outcome.error, outcome.error
    assert outcome.error.startswith(f"OAuth2 token endpoint {endpoint.url} ")
    assert CLIENT_SECRET not in repr(outcome) and "\r" not in outcome.error
    assert hook_tokens(peers) == []


async def test_an_unreachable_token_endpoint_is_retried(
    webhook: WebhookDelivery, peers: WebhookReceiver
) -> None:
    opts = options(peers, TokenEndpoint(peers), token_url="http://127.0.0.1:9/token")
    outcome = await webhook.deliver(DELIVERY, opts)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error == (
        "OAuth2 token endpoint http://127.0.0.1:9/token: connection refused by 127.0.0.1:9"
    )


async def test_the_ssrf_guard_applies_to_the_token_url(
    tmp_path: Path, peers: WebhookReceiver, endpoint: TokenEndpoint
) -> None:
    config = [make_config(tmp_path, allow_private_destinations=False)]
    plugin = WebhookDelivery({}, context=PluginContext(config=lambda: config[0]))
    try:
        opts = options(peers, endpoint)
        opts["url"] = "https://192.0.2.10/hook"  # public-looking; never reached
        outcome = await plugin.deliver(DELIVERY, opts)
    finally:
        await plugin.close()
    assert outcome.kind is OutcomeKind.FAIL
    assert outcome.error is not None and "is a loopback address" in outcome.error
    assert outcome.error.startswith("OAuth2 token endpoint")
    assert endpoint.forms == []


@pytest.mark.parametrize(
    ("oauth2", "problem"),
    [
        ("x", "options.oauth2: expected a table"),
        ({}, "options.oauth2.token_url: required"),
        ({"token_url": "ftp://x/t", "client_id": "a", "client_secret": "b"}, "token_url: expected"),
        ({"token_url": "https://u:p@x/t", "client_id": "a", "client_secret": "b"}, "user@"),
        ({"token_url": "https://x/t", "client_secret": "b"}, "options.oauth2.client_id: required"),
        ({"token_url": "https://x/t", "client_id": "a"}, "options.oauth2.client_secret: required"),
        (
            {"token_url": "https://x/t", "client_id": "a", "client_secret": "c\n"},
            "options.oauth2.client_secret: contains a control character",
        ),
        (
            {"token_url": "https://x/t", "client_id": "a", "client_secret": "c", "scopes": "x"},
            "options.oauth2.scopes: unknown OAuth2 option",
        ),
        (
            {"token_url": "https://x/t", "client_id": "a", "client_secret": "c", "client_auth": 1},
            "options.oauth2.client_auth:",
        ),
    ],
)
def test_oauth2_option_shapes(webhook: WebhookDelivery, oauth2: Any, problem: str) -> None:
    errors = webhook.validate_options({"url": "https://example.com/hook", "oauth2": oauth2})
    assert any(problem in e for e in errors), errors
    assert not any("c\n" in e or '"b"' in e for e in errors)


def test_oauth2_and_another_authorization_are_refused(webhook: WebhookDelivery) -> None:
    table = {"token_url": "https://x/t", "client_id": "a", "client_secret": "b"}
    errors = webhook.validate_options(
        {"url": "https://u:p@example.com/", "headers": {"Authorization": "x"}, "oauth2": table}
    )
    assert any(e.startswith("options.headers.Authorization: oauth2 sets") for e in errors)
    assert any(e.startswith("options.url: carries credentials") for e in errors)
