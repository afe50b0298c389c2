"""Replay and backfill by query from the command line, against a live daemon and receiver.

`queue resend` sends delivered postbacks again (same webhook-id and body), `queue retry`
narrows by the request log's filters, and `queue backfill` gives a trigger added later the
deliveries of the events it matches now — once: a second backfill sends nothing.
"""

from __future__ import annotations

import asyncio

from postbackd.router import delivery_id
from postbackd.testing.waiting import until_async
from tests.configs import event
from tests.integration.test_operator_cli import cli, started

LATE = """
[[trigger]]
name = "acme-late"
customer = "acme"
events = ["order.shipped"]
template = "builtin:order-status-json"
delivery = "webhook"
[trigger.options]
url = "{url}"
"""


async def test_resend_retry_and_backfill_by_query(receiver, daemon_factory, tmp_path):
    receiver.respond("/hook", 200)
    daemon = await started(daemon_factory, receiver, tmp_path)
    await daemon.submit(event("evt-1", order="o-1"), event("evt-2", "order.delivered", order="o-2"))
    await daemon.wait_for_deliveries(2, states=["done"])
    first = await receiver.wait_for(2, path="/hook")

    # resend: count first, then the same postback again (same webhook-id, same body)
    counted = await cli(daemon, "queue", "resend", "--order", "o-1", "--dry-run")
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.strip() == "would resend 1 delivery (dry run: nothing changed)"
    assert len(receiver.requests) == 2
    resent = await cli(daemon, "queue", "resend", "--order", "o-1", "--since", "1h")
    assert (resent.returncode, resent.stdout.strip()) == (0, "resent 1 delivery")
    third = (await receiver.wait_for(3, path="/hook"))[2]
    original = next(r for r in first if r.json()["eventId"] == "evt-1")
    assert third.headers["webhook-id"] == original.headers["webhook-id"]
    assert third.body == original.body
    one = delivery_id("evt-1", "acme-all")

    async def both_attempts_logged() -> bool:  # the receiver answers before the outcome commits
        return len((await daemon.delivery(one))["attempts"]) >= 2

    await until_async(both_attempts_logged, 10, "the resent attempt in the request log")
    detail = await daemon.delivery(one)
    assert [a["number"] for a in detail["attempts"]] == [1, 2]  # numbered after the first

    # a resend with no selector at all is refused; a filter matching nothing is no error
    refused = await cli(daemon, "queue", "resend")
    assert refused.returncode == 2 and "say which deliveries" in refused.stderr
    none = await cli(daemon, "queue", "resend", "--event-type", "order.cancelled")
    assert (none.returncode, none.stdout.strip()) == (0, "resent 0 deliveries")

    # retry by filter: a dead delivery of one event type, found by --event-type and --since
    receiver.respond("/hook", 500)
    await daemon.submit(event("evt-3", "order.cancelled", order="o-3"))
    await daemon.wait_for_deliveries(1, states=["dead"])
    receiver.respond("/hook", 200)
    dry = await cli(daemon, "queue", "retry", "--event-type", "order.cancelled", "--dry-run")
    assert dry.stdout.strip() == "would retry 1 delivery (dry run: nothing changed)", dry.stderr
    other = await cli(daemon, "queue", "retry", "--trigger", "nobody", "--since", "1h")
    assert other.stdout.strip() == "retried 0 deliveries"
    retried = await cli(daemon, "queue", "retry", "--event-type", "order.cancelled")
    assert retried.stdout.strip() == "retried 1 delivery", retried.stderr
    await daemon.wait_for_deliveries(3, states=["done"])

    # backfill: a trigger added later gets the deliveries of the events it matches now
    daemon.write("late.toml", LATE.format(url=receiver.url("/late")))
    status, reloaded = await daemon.request("POST", "/v1/reload")
    assert status == 200, reloaded
    dry = await cli(daemon, "queue", "backfill", "--trigger", "acme-late", "--since", "1h",
                    "--dry-run")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "1 stored event in the window matches trigger acme-late",
        "would create 1 delivery",
    ]
    assert not [r for r in receiver.requests if r.path == "/late"]
    done = await cli(daemon, "queue", "backfill", "--trigger", "acme-late", "--since", "1h")
    assert done.stdout.splitlines()[-1] == "created 1 delivery", done.stderr
    (late,) = await receiver.wait_for(1, path="/late")
    assert late.json()["eventId"] == "evt-1"
    assert late.headers["webhook-id"] == delivery_id("evt-1", "acme-late")

    again = await cli(daemon, "queue", "backfill", "--trigger", "acme-late", "--since", "1h")
    assert again.stdout.splitlines()[1:] == [
        "1 of them has its delivery already",
        "created 0 deliveries",
    ]
    await asyncio.sleep(1.5)  # the dispatcher looks at the spool at least once a second
    assert len([r for r in receiver.requests if r.path == "/late"]) == 1

    # the same over HTTP: a resend by filter, and a backfill that finds nothing left to add
    status, answer = await daemon.request(
        "POST", "/v1/deliveries/resend", {"trigger": "acme-late", "since": "1h"}
    )
    assert (status, answer) == (200, {"action": "resend", "count": 1, "dry_run": False})
    resent_late = (await receiver.wait_for(2, path="/late"))[1]
    assert resent_late.headers["webhook-id"] == late.headers["webhook-id"]
    status, answer = await daemon.request(
        "POST", "/v1/backfill", {"trigger": "acme-late", "since": "1h"}
    )
    assert status == 200 and (answer["matched"], answer["existing"], answer["added"]) == (1, 1, 0)

    unknown = await cli(daemon, "queue", "backfill", "--trigger", "nope", "--since", "1h")
    assert unknown.returncode == 1
    assert "no trigger named 'nope' (triggers: acme-all, acme-late)" in unknown.stderr
    bad = await cli(daemon, "queue", "backfill", "--trigger", "acme-late", "--since", "soon")
    assert bad.returncode == 2 and "'soon' is neither a duration" in bad.stderr
