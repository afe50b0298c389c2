"""A delivery id prefix, as the CLI and the web UI show ids (8 characters), works everywhere:
the API, the CLI and the web UI. An ambiguous one is a 409 (the CLI: exit 1) listing the ids.

The daemon runs as a subprocess and posts to a real receiver; the commands are real
subprocesses on its spool; the UI is fetched over HTTP (a loopback listener without a token
opens the UI directly).
"""

from __future__ import annotations

import aiohttp

from postbackd.router import delivery_id
from tests.configs import event
from tests.integration.test_operator_cli import cli, settled, started

TRIGGER = "acme-all"


def colliding_events() -> tuple[str, str, str]:
    """Two event ids whose deliveries' ids share their first 4 characters, and that prefix."""
    seen: dict[str, str] = {}
    n = 0
    while True:
        event_id = f"evt-prefix-{n}"
        prefix = delivery_id(event_id, TRIGGER)[:4]
        if prefix in seen:
            return seen[prefix], event_id, prefix
        seen[prefix] = event_id
        n += 1


async def test_prefixes_in_the_api_the_cli_and_the_ui(receiver, daemon_factory, tmp_path):
    receiver.respond("/hook", 500)  # every delivery ends dead: retry and hold have work
    daemon = await started(daemon_factory, receiver, tmp_path)
    first, second, shared = colliding_events()
    ids = sorted(delivery_id(e, TRIGGER) for e in (first, second))
    one, two = delivery_id(first, TRIGGER), delivery_id(second, TRIGGER)
    assert (await daemon.post([event(first), event(second, order="o-2")]))[0] == 202
    await settled(daemon, 2, "dead")

    # the API
    status, detail = await daemon.get(f"/v1/deliveries/{one[:8]}")
    assert status == 200 and detail["delivery"]["id"] == one
    status, body = await daemon.get(f"/v1/deliveries/{shared}")
    assert status == 409
    assert body["matches"] == ids and body["more"] is False and body["field"] == "id"
    assert "ambiguous" in body["error"]
    status, body = await daemon.get(f"/v1/deliveries/{shared[:3]}")
    assert status == 404 and "at least 4 characters" in body["error"]
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{daemon.base_url}/v1/deliveries/{shared}/retry") as response:
            assert response.status == 409
            assert (await response.json())["matches"] == ids
        async with session.post(f"{daemon.base_url}/v1/deliveries/{two[:8]}/retry") as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["retried"] == two

        # the web UI
        async with session.get(
            f"{daemon.base_url}/ui/requests/{one[:8]}", allow_redirects=False
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == f"/ui/requests/{one}"
        async with session.get(f"{daemon.base_url}/ui/requests/{one[:8]}") as response:
            assert response.status == 200 and one in await response.text()
        async with session.get(f"{daemon.base_url}/ui/requests/{shared}") as response:
            page = await response.text()
            assert response.status == 409
            assert all(f'href="/ui/requests/{i}"' in page for i in ids)

    # the CLI
    shown, queue_shown, ambiguous, retried, short = (
        await cli(daemon, "requests", "show", one[:8]),
        await cli(daemon, "queue", "show", one[:6], "--json"),
        await cli(daemon, "queue", "hold", shared),
        await cli(daemon, "queue", "retry", one[:5]),
        await cli(daemon, "requests", "show", shared[:2]),
    )
    assert shown.returncode == 0, shown.stderr
    assert f"delivery {one}" in shown.stdout.replace("DELIVERY", "delivery")
    assert queue_shown.returncode == 0 and f'"id":"{one}"' in queue_shown.stdout.replace(" ", "")
    assert ambiguous.returncode == 1 and ambiguous.stdout == ""
    assert all(i in ambiguous.stderr for i in ids) and "ambiguous" in ambiguous.stderr
    assert retried.returncode == 0 and retried.stdout == "retried 1 delivery\n"
    assert short.returncode == 1 and "at least 4 characters" in short.stderr
