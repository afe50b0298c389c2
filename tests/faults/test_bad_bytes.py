"""Bytes that are not valid JSON, UTF-8, gzip or ASCII, sent to a real daemon over a socket.

Each must be a 4xx — JSON ``{"error", "field"}`` on the API — never a 500 or a traceback in the
log, with the speed-ups (orjson) and without them (``POSTBACKD_JSON_CODEC=stdlib``); afterwards
the daemon is ready and every event it accepted is delivered.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable

import pytest

from postbackd.testing import PostbackdDaemon, WebhookReceiver, event_payload
from tests.faults.hostile import (
    assert_delivered,
    assert_error_json,
    assert_ready,
    post_request,
    raw_http,
    submit_and_deliver,
)

TOKEN = "s3cret-token"
JSON = ("Content-Type", b"application/json")
BEARER = ("Authorization", f"Bearer {TOKEN}".encode())


def envelope(**fields: str) -> str:
    """An event as JSON text with raw (unescaped by us) field texts spliced in."""
    base = {"id": '"evt-x"', "type": '"order.shipped"', "customer": '"acme"', "data": "{}"}
    base.update(fields)
    return "{" + ",".join(f'"{k}":{v}' for k, v in base.items()) + "}"


HOSTILE_BODIES = {
    "surrogate in id": envelope(id='"evt-\\ud800"'),
    "surrogate in type": envelope(type='"order.\\udfff"'),
    "surrogate deep in data": envelope(data='{"items":[{"note":"x\\ud83d"}]}'),
    "surrogate in a key": envelope(data='{"\\udc00":1}'),
    "NaN": envelope(data='{"weight":NaN}'),
    "Infinity": envelope(data='{"weight":Infinity}'),
    "-Infinity": envelope(data='{"weight":-Infinity}'),
    "1e999": envelope(data='{"weight":1e999}'),
    "huge integer": envelope(data='{"weight":1' + "0" * 400 + "}"),
    "one bad event in a batch": "[" + envelope(id='"evt-ok"') + "," + envelope(data="NaN") + "]",
}


@pytest.fixture(params=["orjson", "stdlib"])
async def daemon(
    request: pytest.FixtureRequest,
    postbackd_daemon: Callable[..., PostbackdDaemon],
    webhook_receiver: WebhookReceiver,
) -> PostbackdDaemon:
    made = postbackd_daemon(
        triggers=[{"delivery": "webhook", "options": {"url": webhook_receiver.url("/hook")}}],
        sources={"http": {"listen": "127.0.0.1:0", "token": TOKEN}},
        daemon={"admin_token": TOKEN},
        env={"POSTBACKD_JSON_CODEC": request.param},
    )
    made.token = TOKEN
    # daemon_files puts [sources.http] on the daemon's port; keep the token in that table.
    text = (made.conf_dir / "postbackd.toml").read_text()
    text = re.sub(r'listen = "127\.0\.0\.1:0"', f'listen = "127.0.0.1:{made.port}"', text)
    (made.conf_dir / "postbackd.toml").write_text(text)
    return await made.start()


async def test_hostile_json_is_a_400_naming_the_problem(
    daemon: PostbackdDaemon, webhook_receiver: WebhookReceiver
) -> None:
    for name, body in HOSTILE_BODIES.items():
        answer = await raw_http(
            daemon.port, post_request("/v1/events", body.encode(), [JSON, BEARER])
        )
        document = assert_error_json(answer, 400)
        assert "JSON" in document["error"] or document["field"], (name, document)
    status, listed = await daemon.request("GET", "/v1/deliveries?limit=50")
    assert status == 200 and listed["deliveries"] == [], listed
    await submit_and_deliver(daemon, webhook_receiver, "evt-after-json")
    await assert_ready(daemon)


async def test_a_body_that_is_not_what_its_content_encoding_says_is_a_400(
    daemon: PostbackdDaemon, webhook_receiver: WebhookReceiver
) -> None:
    good = json.dumps(event_payload("evt-gzipped")).encode()
    for body in (b"not gzip at all", gzip.compress(good)[:-12] + b"\xff" * 12):
        answer = await raw_http(
            daemon.port,
            post_request("/v1/events", body, [JSON, BEARER, ("Content-Encoding", b"gzip")]),
        )
        assert_error_json(answer, 400)
    answer = await raw_http(
        daemon.port,
        post_request(
            "/v1/events", gzip.compress(good), [JSON, BEARER, ("Content-Encoding", b"gzip")]
        ),
    )
    assert answer.status == 202, answer.body
    await assert_delivered(webhook_receiver, ["evt-gzipped"])
    await assert_ready(daemon)


@pytest.mark.parametrize(
    "credential",
    [b"Bearer s\xc3\xa9cret", b"Bearer \xe9\xe9", "Bearer \u00e9".encode(), b"Bearer \xff\xfe"],
)
async def test_a_non_ascii_bearer_token_is_a_401(
    daemon: PostbackdDaemon, webhook_receiver: WebhookReceiver, credential: bytes
) -> None:
    body = json.dumps(event_payload("evt-refused")).encode()
    for method, path in (("POST", "/v1/events"), ("GET", "/v1/deliveries"), ("GET", "/metrics")):
        answer = await raw_http(
            daemon.port,
            post_request(path, body, [JSON, ("Authorization", credential)], method=method),
        )
        assert_error_json(answer, 401)
    await submit_and_deliver(daemon, webhook_receiver, "evt-after-auth")
    assert "evt-refused" not in {r.json()["eventId"] for r in webhook_receiver.requests}
    await assert_ready(daemon)


async def test_non_ascii_ui_cookies_and_csrf_fields_are_refused_not_500(
    daemon: PostbackdDaemon, webhook_receiver: WebhookReceiver
) -> None:
    form = ("Content-Type", b"application/x-www-form-urlencoded")
    for cookie in (
        b"postbackd_ui=\xc3\xa9",
        b"postbackd_ui=a.1.\xc3\xa9.\xc3\xa9",
        b"postbackd_ui=u.1.x.\xff",
    ):
        page = await raw_http(daemon.port, post_request("/ui/", b"", [("Cookie", cookie)], "GET"))
        assert page.status in (302, 303), page.status  # to the login page, as with no cookie
        login = await raw_http(
            daemon.port, post_request("/ui/login", b"token=x", [form, ("Cookie", cookie)])
        )
        assert login.status == 403, login.status

    # A real anonymous session from the login page, then hostile CSRF and token fields.
    first = await raw_http(daemon.port, post_request("/ui/login", b"", [], "GET"))
    assert first.status == 200
    session = first.headers["set-cookie"].split(";", 1)[0].encode()
    csrf = re.search(rb'name="csrf" value="([^"]+)"', first.body)
    assert csrf is not None
    for field in ("csrf=%C3%A9", "csrf=%ED%A0%80", "csrf=\u00e9"):
        answer = await raw_http(
            daemon.port,
            post_request("/ui/login", field.encode() + b"&token=x", [form, ("Cookie", session)]),
        )
        assert answer.status == 403, answer.status
    for token in ("%C3%A9", "%ED%A0%80", "%FF"):
        answer = await raw_http(
            daemon.port,
            post_request(
                "/ui/login",
                b"csrf=" + csrf.group(1) + b"&token=" + token.encode(),
                [form, ("Cookie", session)],
            ),
        )
        assert answer.status == 401, answer.status
    await submit_and_deliver(daemon, webhook_receiver, "evt-after-ui")
    await assert_ready(daemon)
