"""The webhook delivery against a real aiohttp receiver on 127.0.0.1.

Every socket connect is recorded; one to a non-loopback address is refused by the test before
it could leave the machine, so the SSRF tests prove the guard refused before connecting.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook
from yarl import URL

from postbackd import __version__
from postbackd.config.model import AllowedDestination, Config, DaemonConfig, SmtpConfig, UiConfig
from postbackd.deliveries.webhook import WebhookDelivery, postbackd_register_deliveries
from postbackd.plugin import Delivery, OutcomeKind, PluginContext

BODY = b'{"orderId": "o-1", "status": "shipped"}'
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
SECOND_SECRET = "whsec_" + base64.b64encode(b"t" * 32).decode()


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    server: TestServer
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server.port}{path}"


@pytest.fixture
async def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loop = asyncio.get_running_loop()
    real = loop.sock_connect
    seen: list[str] = []

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        seen.append(address[0])
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise ConnectionRefusedError(f"test refused a connect to {address[0]}")
        await real(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    return seen


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    state = Receiver(TestServer(app, host="127.0.0.1"))

    async def handle(request: web.Request) -> web.StreamResponse:
        state.requests.append(
            Received(request.method, request.path_qs, dict(request.headers), await request.read())
        )
        path = request.path
        if path.startswith("/status/"):
            headers = {"Retry-After": request.query["retry_after"]} if request.query else {}
            return web.Response(status=int(path.rsplit("/", 1)[1]), headers=headers, text="no")
        if path == "/moved":
            return web.Response(status=301, headers={"Location": "/new-place?token=t0p"})
        if path == "/slow":
            await asyncio.wait_for(state.release.wait(), 5)
        if path == "/charset":
            return web.Response(body="héllo".encode(), content_type="text/plain", charset="x-nope")
        if path == "/big":
            return web.Response(body=b"x" * 5000)
        if path == "/cookie":
            response = web.Response(text="have one")
            response.set_cookie("session", "customer-a")
            return response
        return web.Response(text="thanks", headers={"X-Receiver": "test"})

    app.router.add_route("*", "/{tail:.*}", handle)
    await state.server.start_server()
    try:
        yield state
    finally:
        state.release.set()
        await state.server.close()


def make_config(tmp_path: Path, **daemon: Any) -> Config:
    return Config(
        conf_dir=tmp_path,
        daemon=DaemonConfig(spool=tmp_path / "s.db", **daemon),
        sources={},
        deliveries={},
        smtp=SmtpConfig(),
        ui=UiConfig(),
        customers={},
        templates={},
        triggers={},
        lookups={},
    )


@pytest.fixture
def config(tmp_path: Path) -> list[Config]:
    """The context's current Config; tests replace ``config[0]`` to simulate a reload."""
    return [make_config(tmp_path, allow_private_destinations=True)]


@pytest.fixture
async def webhook(config: list[Config]) -> AsyncIterator[WebhookDelivery]:
    plugin = WebhookDelivery({}, context=PluginContext(config=lambda: config[0]))
    try:
        yield plugin
    finally:
        await plugin.close()


DELIVERY = Delivery(
    id="dlv-0001",
    event_id="evt-1",
    event_type="order.shipped",
    customer="acme",
    trigger="acme-shipped",
    attempt=1,
    format="json",
    content_type="application/json",
    subject=None,
    body=BODY,
)


async def test_posts_body_and_headers(webhook: WebhookDelivery, receiver: Receiver) -> None:
    before = int(time.time())
    outcome = await webhook.deliver(
        DELIVERY, {"url": receiver.url(), "headers": {"X-Trace": "abc"}}
    )
    assert outcome.kind is OutcomeKind.OK and outcome.status == 200
    [got] = receiver.requests
    assert (got.method, got.path, got.body) == ("POST", "/hook", BODY)
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == f"postbackd/{__version__}"
    assert got.headers["webhook-id"] == "dlv-0001"
    assert before <= int(got.headers["webhook-timestamp"]) <= int(time.time())
    assert "webhook-signature" not in got.headers
    assert got.headers["X-Trace"] == "abc"
    assert outcome.request is not None and outcome.response is not None
    assert outcome.request["method"] == "POST" and outcome.request["url"] == receiver.url()
    assert outcome.request["body_bytes"] == len(BODY)
    assert outcome.response["status"] == 200 and outcome.response["body"] == "thanks"
    assert outcome.response["headers"]["X-Receiver"] == "test"
    assert outcome.response["truncated"] is False
    assert isinstance(outcome.response["latency_ms"], int)


async def test_a_receivers_cookie_is_not_sent_with_later_postbacks(
    webhook: WebhookDelivery, receiver: Receiver
) -> None:
    first = await webhook.deliver(DELIVERY, {"url": receiver.url("/cookie", "localhost")})
    second = await webhook.deliver(DELIVERY, {"url": receiver.url("/cookie", "localhost")})
    assert first.kind is OutcomeKind.OK and second.kind is OutcomeKind.OK
    assert "Set-Cookie" in first.response["headers"]
    assert [r.headers.get("Cookie") for r in receiver.requests] == [None, None]


async def test_put_and_content_type_override(webhook: WebhookDelivery, receiver: Receiver) -> None:
    xml = replace(DELIVERY, format="xml", content_type="application/xml", body=b"<a/>")
    options = {"url": receiver.url(), "method": "put", "headers": {"content-type": "text/xml"}}
    outcome = await webhook.deliver(xml, options)
    assert outcome.succeeded
    [got] = receiver.requests
    assert got.method == "PUT" and got.headers["Content-Type"] == "text/xml"


async def test_signature_verifies_with_standardwebhooks(
    webhook: WebhookDelivery, receiver: Receiver
) -> None:
    await webhook.deliver(DELIVERY, {"url": receiver.url(), "secret": SECRET})
    [got] = receiver.requests
    Webhook(SECRET).verify(got.body, got.headers)


async def test_two_secrets_each_verify(webhook: WebhookDelivery, receiver: Receiver) -> None:
    await webhook.deliver(DELIVERY, {"url": receiver.url(), "secret": [SECRET, SECOND_SECRET]})
    [got] = receiver.requests
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(got.body, got.headers)
    Webhook(SECOND_SECRET).verify(got.body, got.headers)


async def test_timestamp_and_signature_are_fresh_at_each_attempt(
    webhook: WebhookDelivery, receiver: Receiver
) -> None:
    options = {"url": receiver.url(), "secret": SECRET}
    await webhook.deliver(DELIVERY, options)
    await asyncio.sleep(1.02 - time.time() % 1)
    await webhook.deliver(replace(DELIVERY, attempt=2), options)
    first, second = receiver.requests
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert second.headers["webhook-signature"] != first.headers["webhook-signature"]
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "dlv-0001"
    for got in (first, second):
        Webhook(SECRET).verify(got.body, got.headers)


@pytest.mark.parametrize(
    ("path", "kind", "error", "after"),
    [
        ("/status/201", OutcomeKind.OK, None, None),
        (
            "/status/410",
            OutcomeKind.FAIL,
            "410 Gone: the receiver says this endpoint is gone",
            None,
        ),
        ("/status/500", OutcomeKind.RETRY, "HTTP 500 from {url}", None),
        ("/status/404", OutcomeKind.RETRY, "HTTP 404 from {url}", None),
        ("/status/429?retry_after=7", OutcomeKind.RETRY, "HTTP 429 from {url}", 7.0),
        ("/status/503?retry_after=soon", OutcomeKind.RETRY, "HTTP 503 from {url}", None),
        ("/status/500?retry_after=7", OutcomeKind.RETRY, "HTTP 500 from {url}", None),
    ],
)
async def test_status_codes(
    webhook: WebhookDelivery,
    receiver: Receiver,
    path: str,
    kind: OutcomeKind,
    error: str | None,
    after: float | None,
) -> None:
    url = receiver.url(path)
    outcome = await webhook.deliver(DELIVERY, {"url": url})
    assert outcome.kind is kind
    assert outcome.status == int(path.split("/")[2][:3])
    if error is None:
        assert outcome.error is None
    else:
        assert outcome.error is not None and outcome.error.startswith(error.format(url=url))
    assert outcome.retry_after == after
    assert outcome.response is not None and outcome.response["status"] == outcome.status


async def test_retry_after_as_http_date(webhook: WebhookDelivery, receiver: Receiver) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    url = receiver.url(f"/status/503?retry_after={quote(when)}")
    outcome = await webhook.deliver(DELIVERY, {"url": url})
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.retry_after is not None and 25 <= outcome.retry_after <= 31


async def test_redirect_is_not_followed(webhook: WebhookDelivery, receiver: Receiver) -> None:
    outcome = await webhook.deliver(DELIVERY, {"url": receiver.url("/moved")})
    assert outcome.kind is OutcomeKind.RETRY and outcome.status == 301
    assert outcome.error is not None
    assert "redirects are not followed" in outcome.error
    assert receiver.url("/new-place?token=***") in outcome.error
    assert [r.path for r in receiver.requests] == ["/moved"]


async def test_timeout_is_retried(webhook: WebhookDelivery, receiver: Receiver) -> None:
    url = receiver.url("/slow")
    started = time.monotonic()
    outcome = await webhook.deliver(DELIVERY, {"url": url, "timeout": "0.3s"})
    assert time.monotonic() - started < 3
    assert outcome.kind is OutcomeKind.RETRY and outcome.status is None
    assert outcome.error == f"timed out after 0.3s waiting for {url}"
    assert outcome.response is not None and outcome.response["error"] == outcome.error


async def test_connection_refused_is_retried(webhook: WebhookDelivery) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = await webhook.deliver(DELIVERY, {"url": f"http://127.0.0.1:{port}/hook"})
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error == f"connection refused by 127.0.0.1:{port}"
    assert outcome.breaker is True


async def test_connect_timeout_is_retried(webhook: WebhookDelivery) -> None:
    """A listener whose accept queue is full drops new SYNs, so a connect hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers: list[socket.socket] = []
        try:
            for _ in range(5):
                filler = socket.socket()
                fillers.append(filler)
                filler.settimeout(0.2)
                try:
                    filler.connect(("127.0.0.1", port))
                except TimeoutError:
                    break
            else:
                pytest.skip("this kernel accepts every connect; cannot provoke a connect timeout")
            options = {"url": f"http://127.0.0.1:{port}/", "connect_timeout": "0.2s"}
            outcome = await webhook.deliver(DELIVERY, options)
        finally:
            for filler in fillers:
                filler.close()
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error == f"timed out after 0.2s connecting to 127.0.0.1:{port}"


async def test_response_excerpt_is_one_kib(webhook: WebhookDelivery, receiver: Receiver) -> None:
    outcome = await webhook.deliver(DELIVERY, {"url": receiver.url("/big")})
    assert outcome.succeeded and outcome.response is not None
    assert outcome.response["body"] == "x" * 1024 and outcome.response["truncated"] is True


async def test_excerpt_survives_an_unknown_charset(
    webhook: WebhookDelivery, receiver: Receiver
) -> None:
    outcome = await webhook.deliver(DELIVERY, {"url": receiver.url("/charset")})
    assert outcome.succeeded and outcome.response is not None
    assert outcome.response["body"] == "héllo"


async def test_secrets_are_masked_in_the_request_log(
    webhook: WebhookDelivery, receiver: Receiver
) -> None:
    url = receiver.url("/hook?token=t0p&page=2")
    headers = {"X-Api-Key": "k3y", "Authorization": "Bearer b34r", "X-Trace": "abc"}
    outcome = await webhook.deliver(DELIVERY, {"url": url, "secret": SECRET, "headers": headers})
    assert outcome.succeeded and outcome.request is not None
    [got] = receiver.requests
    assert got.headers["X-Api-Key"] == "k3y" and got.headers["Authorization"] == "Bearer b34r"
    assert got.path == "/hook?token=t0p&page=2"
    logged = outcome.request["headers"]
    assert logged["X-Api-Key"] == logged["Authorization"] == logged["webhook-signature"] == "***"
    assert logged["X-Trace"] == "abc" and logged["webhook-id"] == "dlv-0001"
    assert outcome.request["url"] == receiver.url("/hook?token=***&page=2")
    text = repr(outcome)
    for secret in ("k3y", "b34r", "t0p", SECRET[6:], got.headers["webhook-signature"]):
        assert secret not in text


async def test_url_credentials_are_sent_and_masked(
    webhook: WebhookDelivery, receiver: Receiver
) -> None:
    url = receiver.url().replace("http://", "http://user:pw@")
    outcome = await webhook.deliver(DELIVERY, {"url": url})
    assert outcome.succeeded and outcome.request is not None
    [got] = receiver.requests
    assert got.headers["Authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()
    assert outcome.request["url"] == receiver.url().replace("http://", "http://user:***@")
    assert outcome.request["headers"]["Authorization"] == "***"
    assert "pw@" not in repr(outcome) and got.headers["Authorization"] not in repr(outcome)


# ------------------------------------------------------------------ the SSRF guard


def _refused(outcome: Any, host: str, address: str, kind: str, port: int) -> None:
    """A refusal whose message suggests allowing that address on that port only."""
    assert outcome.kind is OutcomeKind.FAIL and outcome.breaker is False
    assert outcome.status is None
    network = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    subject = f"is {kind}" if host == address else f"resolves to {address}, {kind}"
    assert outcome.error == (
        f"destination {host} {subject}; allow it with [daemon] allow_private_destinations = "
        f'true or allow_destinations = ["{network}"]'
    )


@pytest.mark.parametrize(
    ("url", "host", "address", "kind"),
    [
        ("http://127.0.0.1:{port}/hook", "127.0.0.1", "127.0.0.1", "a loopback address"),
        ("http://localhost:{port}/hook", "localhost", "127.0.0.1", "a loopback address"),
        ("http://[::1]:{port}/hook", "::1", "::1", "a loopback address"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
            "169.254.169.254",
            "a link-local address",
        ),
        ("https://10.0.0.1/hook", "10.0.0.1", "10.0.0.1", "a private address"),
        ("http://0.0.0.0:{port}/hook", "0.0.0.0", "0.0.0.0", "an unspecified address"),
    ],
)
async def test_private_destinations_are_refused_before_connecting(
    webhook: WebhookDelivery,
    receiver: Receiver,
    config: list[Config],
    connects: list[str],
    url: str,
    host: str,
    address: str,
    kind: str,
) -> None:
    config[0] = make_config(config[0].conf_dir)
    url = url.format(port=receiver.server.port)
    outcome = await webhook.deliver(DELIVERY, {"url": url})
    _refused(outcome, host, address, kind, URL(url).port or 0)
    assert receiver.requests == [] and connects == []


async def test_allow_destinations_lets_a_listed_address_through(
    webhook: WebhookDelivery, receiver: Receiver, config: list[Config], connects: list[str]
) -> None:
    allow = (AllowedDestination(ipaddress.ip_network("127.0.0.1/32")),)
    config[0] = make_config(config[0].conf_dir, allow_destinations=allow)
    assert (await webhook.deliver(DELIVERY, {"url": receiver.url()})).succeeded
    assert (await webhook.deliver(DELIVERY, {"url": receiver.url(host="localhost")})).succeeded
    refused = await webhook.deliver(DELIVERY, {"url": "http://127.0.0.2:9/"})
    _refused(refused, "127.0.0.2", "127.0.0.2", "a loopback address", 9)
    assert len(receiver.requests) == 2 and set(connects) == {"127.0.0.1"}


async def test_a_reload_applies_to_the_next_attempt(
    webhook: WebhookDelivery, receiver: Receiver, config: list[Config], connects: list[str]
) -> None:
    url = receiver.url(host="localhost")
    assert (await webhook.deliver(DELIVERY, {"url": url})).succeeded
    config[0] = make_config(config[0].conf_dir)
    _refused(
        await webhook.deliver(DELIVERY, {"url": url}),
        "localhost",
        "127.0.0.1",
        "a loopback address",
        URL(url).port or 0,
    )
    config[0] = make_config(config[0].conf_dir, allow_private_destinations=True)
    assert (await webhook.deliver(DELIVERY, {"url": url})).succeeded
    assert len(receiver.requests) == 2


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[TestServer, list[str]]]:
    """A forward proxy that answers itself: it records the absolute URL and forwards nothing."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        return web.Response(text="proxied")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server, seen
    finally:
        await server.close()


async def test_proxy_carries_allowed_destinations_and_the_guard_still_checks(
    webhook: WebhookDelivery,
    config: list[Config],
    proxy: tuple[TestServer, list[str]],
    connects: list[str],
) -> None:
    server, seen = proxy
    config[0] = make_config(config[0].conf_dir, proxy=f"http://localhost:{server.port}")
    outcome = await webhook.deliver(DELIVERY, {"url": "http://93.184.216.34/hook"})
    assert outcome.succeeded and outcome.response is not None
    assert outcome.response["body"] == "proxied"
    assert seen == ["http://93.184.216.34/hook"]
    refused = await webhook.deliver(DELIVERY, {"url": "http://localhost:8080/hook"})
    _refused(refused, "localhost", "127.0.0.1", "a loopback address", 8080)
    assert len(seen) == 1 and connects == ["127.0.0.1"]


# ------------------------------------------------------------------ options and registration


def test_validate_options_accepts_a_full_table(webhook: WebhookDelivery) -> None:
    options = {
        "url": "https://acme.example.com/hooks/orders",
        "method": "PATCH",
        "secret": [SECRET, "plain text secret"],
        "headers": {"X-Api-Key": "k"},
        "timeout": "20s",
        "connect_timeout": 2,
    }
    assert webhook.validate_options(options) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "options.url: required"),
        ({"url": "ftp://example.com/x"}, "options.url: must start with http:// or https://"),
        ({"url": "example.com/hook"}, "options.url: must start with http:// or https://"),
        ({"url": "http:///hook"}, "options.url: has no host"),
        ({"url": "http://127.1/hook"}, "options.url: host 127.1 is not a canonical IPv4"),
        (
            {"url": "http://a/", "tiemout": "5s"},
            'options.tiemout: unknown webhook option; did you mean "timeout"?',
        ),
        ({"url": "http://a/", "method": "GET"}, "options.method: must be POST, PUT or PATCH"),
        ({"url": "http://a/", "secret": []}, "options.secret: empty list"),
        ({"url": "http://a/", "secret": ["ok", 5]}, "options.secret[1]: expected a string"),
        (
            {"url": "http://a/", "secret": "whsec_%%%"},
            "options.secret: a secret starting with 'whsec_' must be base64",
        ),
        (
            {"url": "http://a/", "headers": {"X-A": "1\r\nX-B: 2"}},
            "options.headers.X-A: contains a line break",
        ),
        (
            {"url": "http://a/", "headers": {"webhook-id": "x"}},
            "options.headers.webhook-id: set by postbackd",
        ),
        (
            {"url": "http://a/", "headers": {"X-N": 2}},
            'options.headers.X-N: expected a string; quote it: "2"',
        ),
        (
            {"url": "http://a/", "headers": {"Bad Name": "x"}},
            "options.headers.Bad Name: not a valid header name",
        ),
        ({"url": "http://a/", "headers": "X-A: 1"}, "options.headers: expected a table"),
        (
            {"url": "http://u:p@a/", "headers": {"authorization": "Bearer x"}},
            "options.headers.Authorization: the url carries credentials",
        ),
        ({"url": "http://a/", "timeout": "soon"}, "options.timeout: invalid duration 'soon'"),
        (
            {"url": "http://a/", "connect_timeout": "0s"},
            "options.connect_timeout: must be more than zero",
        ),
    ],
)
def test_validate_options_reports_each_problem(
    webhook: WebhookDelivery, options: dict[str, Any], message: str
) -> None:
    errors = webhook.validate_options(options)
    assert len(errors) == 1 and errors[0].startswith(message), errors


async def test_invalid_options_at_attempt_time_fail_without_a_request(
    webhook: WebhookDelivery, connects: list[str]
) -> None:
    outcome = await webhook.deliver(DELIVERY, {"url": "http://a/", "method": "DELETE"})
    assert outcome.kind is OutcomeKind.FAIL and outcome.breaker is False
    assert outcome.error == (
        "trigger acme-shipped: invalid webhook options: "
        "options.method: must be POST, PUT or PATCH (got 'DELETE')"
    )
    assert connects == []


@pytest.mark.parametrize(
    ("url", "destination"),
    [
        ("https://Acme.Example.com/hooks?x=1", "https://acme.example.com:443"),
        ("http://acme.example.com/hooks", "http://acme.example.com:80"),
        ("http://[::1]:8080/x", "http://[::1]:8080"),
        ("https://10.1.2.3:8443", "https://10.1.2.3:8443"),
    ],
)
def test_destination_is_scheme_host_port(
    webhook: WebhookDelivery, url: str, destination: str
) -> None:
    assert webhook.destination({"url": url}) == destination


def test_settings_are_refused_with_a_pointer_to_the_trigger(config: list[Config]) -> None:
    with pytest.raises(ValueError, match=r"\[deliveries.webhook\]: unknown setting\(s\) timeout"):
        WebhookDelivery({"timeout": "5s"}, context=PluginContext(config=lambda: config[0]))


def test_registers_as_webhook() -> None:
    registered: list[tuple[str, Callable[..., Any]]] = []
    postbackd_register_deliveries(lambda name, cls: registered.append((name, cls)))
    assert registered == [("webhook", WebhookDelivery)]
