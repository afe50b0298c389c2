"""Hostile bodies at the operator's verb routes (DESIGN §9): every one is a 4xx JSON error
naming what is wrong, nothing in the spool changes, and the daemon stays ready and loses
nothing it acknowledged."""

from __future__ import annotations

import pytest

from tests.configs import event
from tests.faults.daemon_checks import assert_still_ready
from tests.faults.hostile import assert_error_json, post_request, raw_http

ROUTES = (
    "/v1/deliveries/retry",
    "/v1/deliveries/resend",
    "/v1/deliveries/hold",
    "/v1/deliveries/release",
    "/v1/deliveries/purge",
    "/v1/backfill",
    "/v1/erase",
)
HOSTILE = (
    b"\xff\xfe\x00garbage",  # not UTF-8
    b"[" * 100_000 + b"]" * 100_000,  # nesting a recursive parser would die on
    b'{"since": NaN, "trigger": "acme-all"}',
    b'{"since": 1e999, "trigger": "acme-all"}',
    b'{"ids": "not-a-list"}',
    b'{"ids": [' + b",".join([b'"abcd-1"'] * 10_001) + b"]}",
    b'{"ids": [1, 2]}',
    b'{"ids": [""]}',
    b'{"customer": "' + b"x" * 5000 + b'"}',
    b'{"customer": "\\ud800"}',
    b'{"dry_run": "yes", "customer": "acme"}',
    b'{"all": 1}',
    b'{"state": "everything"}',
    b'{"order": null}',
    b'{"trigger": ["acme-all"], "since": "7d"}',
    b'{"since": "next tuesday", "trigger": "acme-all"}',
    b'"just a string"',
    b"null",
)


@pytest.mark.parametrize("route", ROUTES)
async def test_hostile_verb_bodies_change_nothing(daemon_factory, receiver, route) -> None:
    daemon = daemon_factory(receiver.url("/hook"))
    await daemon.start()
    await daemon.submit(event("evt-1", order="o-1"), event("evt-2", order="o-2"))
    before = await daemon.wait_for_deliveries(2, states=("done",))

    for body in HOSTILE:
        answer = await raw_http(
            daemon.port, post_request(route, body, [("Content-Type", b"application/json")])
        )
        assert_error_json(answer, 400)

    after = await daemon.deliveries()
    assert sorted((d["id"], d["state"], d["attempts"]) for d in after) == sorted(
        (d["id"], d["state"], d["attempts"]) for d in before
    )
    assert len(receiver.requests) == 2  # nothing was resent, retried or backfilled
    await assert_still_ready(daemon, deliveries=3)
