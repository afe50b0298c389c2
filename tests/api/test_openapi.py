"""The admin API's OpenAPI 3.1 document: valid (a maintained validator), committed as it is
generated, describing exactly the routes the daemon serves, and matching real answers.

The routes are walked from what the HTTP listener serves (`HttpSource.routes`: intake and the
admin API), so a new route without a description fails here. Then a real daemon answers a
request to every route (each with good input, and most with bad input too) and each answer is
checked against the document's schema for that route and status.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from postbackd.api import AdminApi
from postbackd.api.openapi import openapi_document, render
from postbackd.plugin import PluginContext
from postbackd.router import delivery_id
from postbackd.sources.http import HttpSource
from postbackd.testing import PostbackdDaemon, free_port
from tests.configs import event, webhook_config
from tests.paths import REPO

UI = "/ui"
"""The web UI's pages: HTML behind their own login (tests/ui), not part of the API."""
TOKEN = "admin-secret-token"
COMMITTED = REPO / "docs" / "openapi.json"


def served_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the HTTP listener serves, the UI's pages aside."""
    admin = AdminApi(backend=None).routes()  # type: ignore[arg-type]  # only binds handlers
    context = PluginContext(config=lambda: None, admin_routes=admin)  # type: ignore[arg-type, return-value]
    source = HttpSource({"listen": "127.0.0.1:1"}, context)
    return {
        (route.method.lower(), route.path)
        for route in source.routes()
        if not (route.path == UI or route.path.startswith(UI + "/"))
    }


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(openapi_document(), cls=OpenAPIV31SpecValidator)


def test_the_committed_copy_is_current() -> None:
    assert COMMITTED.read_text() == render(), (
        "docs/openapi.json is stale: run `python -m postbackd.api.openapi > docs/openapi.json`"
    )


def test_every_served_route_is_described_and_nothing_else() -> None:
    served, documented = served_routes(), documented_routes(openapi_document())
    assert served - documented == set(), "routes without a description in postbackd/openapi.py"
    assert documented - served == set(), "described routes the daemon does not serve"


# ---------------------------------------------------------------------- real answers


class Checker:
    """Calls a live daemon and checks each answer against the document."""

    def __init__(self, daemon: PostbackdDaemon, document: dict[str, Any]) -> None:
        self.daemon = daemon
        self.document = document
        self.exercised: set[tuple[str, str]] = set()

    async def call(
        self,
        method: str,
        template: str,
        status: int,
        *,
        path: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        token: str | None = TOKEN,
    ) -> Any:
        """``METHOD path`` (default: the template itself); the status must be `status` and
        the answer must match the document's schema for it. Returns the decoded answer."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data: Any = raw
        if body is not None:
            data = aiohttp.payload.JsonPayload(body)
        url = f"{self.daemon.base_url}{path or template}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, data=data, headers=headers) as response,
        ):
            text = await response.text()
            media = response.content_type
        assert response.status == status, (method, path or template, response.status, text[:500])
        responses = self.document["paths"][template][method.lower()]["responses"]
        described = responses.get(str(status))
        assert described is not None, f"{method} {template}: {status} is not described"
        content = described.get("content")
        assert content is not None and media in content, (template, status, media)
        value: Any = text
        if media == "application/json":
            value = json.loads(text)
        schema = {**content[media]["schema"], "components": self.document["components"]}
        jsonschema.Draft202012Validator(schema).validate(value)
        self.exercised.add((method.lower(), template))
        return value


@pytest.fixture
async def daemon(daemon_factory, receiver, tmp_path: Path) -> PostbackdDaemon:
    port = free_port()
    files = webhook_config(
        receiver.url("/hook"), port=port, spool=tmp_path / "spool.db", token=TOKEN
    )
    files["daemon.toml"] = files["daemon.toml"].replace(
        "[daemon]", f'[daemon]\nadmin_token = "{TOKEN}"'
    )
    files["acme.toml"] = files["acme.toml"].replace(
        '["200ms", "200ms", "200ms"]', '["1h", "1h", "1h"]'
    )
    files["off.toml"] = OFF_TRIGGER.format(url=receiver.url("/off"))
    files["sla.toml"] = SLA_RULE
    started = daemon_factory(receiver.url("/hook"), token=TOKEN, files=files)
    started.port = port
    started.launch()
    await started.wait_ready()
    return started


SLA_RULE = """
[[sla]]
name = "deliver-in-a-week"
after = "order.shipped"
expect = ["order.delivered"]
within = "7d"
emit = "order.delayed"
"""

OFF_TRIGGER = """
[[trigger]]
name = "acme-off"
customer = "acme"
events = ["order.*"]
template = "builtin:order-status-json"
delivery = "webhook"
status = "inactive"
[trigger.options]
url = "{url}"
"""


async def test_real_answers_of_every_route_match_the_document(daemon, receiver) -> None:
    check = Checker(daemon, openapi_document())
    call = check.call
    receiver.respond("/hook", 200)

    await call("GET", "/healthz", 200, token=None)
    await call("GET", "/readyz", 200, token=None)
    await call("GET", "/metrics", 200)
    await call("GET", "/metrics", 401, token="wrong")
    await call("GET", "/v1/openapi.json", 200)
    assert await call("GET", "/v1/config", 200) is not None
    intake = await call("POST", "/v1/events", 202, body=[event("evt-1", order="o-1")])
    assert intake["accepted"] == ["evt-1"]
    await call("POST", "/v1/events", 400, raw=b"{not json")
    await call("POST", "/v1/events", 401, body=event("evt-x"), token="wrong")
    done = delivery_id("evt-1", "acme-all")
    await daemon.wait_for_deliveries(1, states=["done"])

    await call("GET", "/v1/deliveries", 200, path="/v1/deliveries?customer=acme&limit=5")
    await call("GET", "/v1/deliveries", 400, path="/v1/deliveries?state=bogus")
    await call("GET", "/v1/deliveries/{id}", 200, path=f"/v1/deliveries/{done[:8]}")
    await call("GET", "/v1/deliveries/{id}", 404, path="/v1/deliveries/no-such-delivery")
    (timer,) = (await call("GET", "/v1/timers", 200))["timers"]
    assert timer["rule"] == "deliver-in-a-week" and timer["order_id"] == "o-1"
    await call("GET", "/v1/timers", 200, path="/v1/timers?state=all&limit=5")
    await call("GET", "/v1/timers", 400, path="/v1/timers?state=late")

    # one delivery kept waiting: the receiver fails it and the next attempt is an hour away
    receiver.respond("/hook", 500)
    await daemon.submit(event("evt-2", order="o-2"))
    waiting = delivery_id("evt-2", "acme-all")
    await until_attempts(daemon, waiting, 1)
    one = f"/v1/deliveries/{waiting}"
    await call("POST", "/v1/deliveries/{id}/retry", 200, path=f"{one}/retry")
    await until_attempts(daemon, waiting, 2)
    await call("POST", "/v1/deliveries/{id}/retry", 404, path="/v1/deliveries/nope-nope/retry")
    await call("POST", "/v1/deliveries/{id}/hold", 200, path=f"{one}/hold",
               body={"reason": "customer asked"})  # fmt: skip
    await call("POST", "/v1/deliveries/{id}/hold", 409, path=f"{one}/hold")
    await call("POST", "/v1/deliveries/{id}/hold", 400, path=f"{one}/hold", body={"why": 1})
    await call("POST", "/v1/deliveries/{id}/release", 200, path=f"{one}/release")
    await call("POST", "/v1/deliveries/{id}/release", 404, path="/v1/deliveries/nope/release")
    await call("POST", "/v1/deliveries/{id}/resend", 409, path=f"{one}/resend")
    receiver.respond("/hook", 200)
    await call("POST", "/v1/deliveries/{id}/resend", 200, path=f"/v1/deliveries/{done}/resend",
               body={"rerender": True})  # fmt: skip

    for verb, good in (
        ("retry", {"trigger": "acme-all", "since": "1h", "dry_run": True}),
        ("resend", {"order": "o-1", "dry_run": True}),
        ("hold", {"customer": "acme", "event_type": "order.shipped", "dry_run": True}),
        ("release", {"all": True, "dry_run": True}),
        ("purge", {"state": "cancelled"}),
    ):
        path = f"/v1/deliveries/{verb}"
        answer = await call("POST", path, 200, body=good)
        assert answer["action"] == verb
        await call("POST", path, 400, body={})  # no selector
        await call("POST", path, 400, body={"bogus": 1})
        await call("POST", path, 404, body={"ids": ["zzzz-no-such-id"]})
    await call("POST", "/v1/deliveries/retry", 400, body={"state": "done"})
    await call("POST", "/v1/deliveries/release", 400, body={"since": "soon"})

    backfilled = await call(
        "POST", "/v1/backfill", 200, body={"trigger": "acme-all", "since": 0, "dry_run": True}
    )
    assert (backfilled["matched"], backfilled["added"]) == (2, 0)
    await call("POST", "/v1/backfill", 404, body={"trigger": "nope", "since": "1d"})
    await call("POST", "/v1/backfill", 409, body={"trigger": "acme-off", "since": "1d"})
    await call("POST", "/v1/backfill", 400, body={"trigger": "acme-all"})
    await call("POST", "/v1/erase", 200, body={"order": "o-unknown"})
    await call("POST", "/v1/erase", 400, body={"order": ""})

    render = {"template": "builtin:order-status-json", "sample": "order.shipped"}
    await call("POST", "/v1/render", 200, body=render)
    await call("POST", "/v1/render", 404, body={**render, "template": "nope"})
    await call("POST", "/v1/render", 400, raw=b"[")
    await call("POST", "/v1/reload", 200)
    daemon.write("broken.toml", "[[trigger\n")
    await call("POST", "/v1/reload", 422)
    (daemon.conf_dir / "broken.toml").unlink()

    assert check.exercised == served_routes(), "routes no real answer was checked for"


async def until_attempts(daemon: PostbackdDaemon, delivery: str, count: int) -> None:
    """Wait (bounded) until the delivery is pending with `count` attempts in its log."""
    for _ in range(200):
        status, detail = await daemon.get(f"/v1/deliveries/{delivery}")
        if status == 200:
            summary = detail["delivery"]
            if summary["state"] == "pending" and summary["attempts"] >= count:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"delivery {delivery} never reached {count} attempts")
