"""The spool commands' pieces without a daemon: --since, ids from stdin, id prefixes on a real
spool, the table, `show`'s four stages, and which destinations a --destination names."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from postbackd.commands.queue import destination_matches
from postbackd.commands.requests import (
    TableWriter,
    format_detail,
    format_table,
    last_cell,
    short_destination,
)
from postbackd.commands.spool_access import (
    CommandFailed,
    parse_since,
    read_ids,
    resolve_ids,
    short_duration,
)
from postbackd.spool import Spool
from postbackd.spool.model import AttemptRecord, DeliveryDetail, DeliveryState, DeliverySummary
from tests.spool.helpers import add, new_delivery

S = DeliveryState
NOW = 1_800_000_000.0


def summary(**changes: object) -> DeliverySummary:
    values: dict[str, object] = {
        "id": "4da58e0d-8c1f-5a7e-9a55-0d8f1b9e2c31",
        "event_id": "evt-1",
        "order_id": "o-1",
        "customer": "acme",
        "trigger": "acme-all",
        "event_type": "order.shipped",
        "plugin": "webhook",
        "state": S.DONE,
        "attempts": 1,
        "created_at": NOW - 30,
        "next_attempt_at": None,
        "last_status": 200,
        "last_error": None,
        "destination": "https://hooks.acme.example:443",
    }
    values.update(changes)
    return DeliverySummary(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- arguments


def test_since_takes_a_duration_or_an_iso_time() -> None:
    assert parse_since("1h", NOW) == NOW - 3600
    assert parse_since("2d", NOW) == NOW - 2 * 86400
    utc = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()
    assert parse_since("2024-05-01T12:00:00Z", NOW) == utc
    assert parse_since("2024-05-01T14:00+02:00", NOW) == utc
    local = datetime(2024, 5, 1, 12, 0).astimezone().timestamp()
    assert parse_since("2024-05-01T12:00", NOW) == local
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("yesterday", NOW)


def test_ids_from_arguments_and_stdin() -> None:
    stdin = ["a1\n", "\n", "  b2  \n", "a1\n", ""]
    assert read_ids(["x9", "-"], stdin) == ["x9", "a1", "b2"]
    assert read_ids(["-"], []) == []


async def test_id_prefixes_resolve_to_one_delivery(spool: Spool) -> None:
    first = "aaaaaaaa-1111-4000-8000-000000000001"
    second = "aaaaaaaa-2222-4000-8000-000000000002"
    await add(spool, "e1", new_delivery(first), new_delivery(second, trigger="t2"))
    assert await resolve_ids(spool, [first, "aaaaaaaa-2"]) == [first, second]
    assert await resolve_ids(spool, ["aaaaaaaa-1", first]) == [first]  # the same one twice
    with pytest.raises(CommandFailed, match="at least 4 characters"):
        await resolve_ids(spool, ["aaa"])  # too short to be a prefix
    with pytest.raises(CommandFailed, match="delivery id aaaa is ambiguous") as ambiguous:
        await resolve_ids(spool, ["aaaa"])
    assert ambiguous.value.message.splitlines()[1:] == [
        f"  {first}",
        f"  {second}",
        "give more of the id",
    ]
    with pytest.raises(CommandFailed, match="no delivery id starts with 'bbbbbbbb'"):
        await resolve_ids(spool, ["bbbbbbbb", first])


# ---------------------------------------------------------------------- the table


def test_table_fits_the_width_and_cuts_the_last_error_first() -> None:
    error = "request to https://hooks.acme.example/postbacks failed: connection refused " * 2
    rows = [
        summary(),
        summary(
            id="9f0e3b77-0000-5000-8000-000000000000",
            state=S.PENDING,
            attempts=12,
            last_status=None,
            last_error=error,
            next_attempt_at=NOW + 300,
            trigger="acme-shipped",
        ),
    ]
    lines = format_table(rows, width=100, now=NOW)
    assert lines[0].split() == [
        "TIME", "ID", "CUSTOMER", "TRIGGER", "EVENT", "DESTINATION", "STATE", "TRY", "LAST"
    ]  # fmt: skip
    assert all(len(line) <= 100 for line in lines)
    pending = lines[2].split()
    assert pending[1:3] == ["9f0e3b77", "acme"]
    assert lines[2][lines[0].index("STATE") :].startswith("pending")
    assert " order.shipped " in lines[2] and "https://" not in lines[2]
    assert " request to" in lines[2] and lines[2].endswith("…")  # the error is cut
    assert " 4da58e0d " in lines[1] and lines[1].endswith("200")
    assert lines[0].index("TRY") + 3 == lines[2].index("12") + 2  # counts right-aligned
    wide = format_table(rows, width=300, now=NOW)
    assert "(next in 5m00s)" in wide[2] and "…" not in wide[2]


def test_later_pages_keep_the_first_page_columns() -> None:
    writer = TableWriter(width=100, now=NOW)
    first = writer.lines([summary()])
    later = writer.lines([summary(customer="a-customer-with-a-long-name")])
    assert len(first) == 2 and len(later) == 1  # one header
    assert later[0].index("acme-all") == first[1].index("acme-all")
    assert " a-custo… " in later[0]


def test_last_cell_says_why_held_and_when_next() -> None:
    held = summary(state=S.HELD, held_reason="trigger inactive", last_status=None)
    assert last_cell(held, NOW) == "[trigger inactive]"
    due = summary(state=S.PENDING, next_attempt_at=NOW - 5, last_status=503, last_error="busy")
    assert last_cell(due, NOW) == "503 busy (due)"
    assert last_cell(summary(state=S.PENDING, attempts=0, last_status=None), NOW) == "-"


def test_short_forms() -> None:
    assert short_destination("https://acme.example:443") == "acme.example"
    assert short_destination("https://acme.example:8443") == "acme.example:8443"
    assert short_destination("http://10.0.0.5:80") == "http://10.0.0.5:80"
    assert short_destination(None) == "-"
    assert [short_duration(s) for s in (4.4, 65, 3 * 3600 + 300, 2 * 86400 + 7200)] == [
        "4s",
        "1m05s",
        "3h05m",
        "2d02h",
    ]


# ---------------------------------------------------------------------- show


def test_detail_shows_the_four_stages() -> None:
    detail = DeliveryDetail(
        summary=summary(state=S.DEAD, attempts=2, last_status=None, last_error="gave up"),
        event={"id": "evt-1", "type": "order.shipped", "data": {"orderId": "o-1"}},
        body=b'{"orderId":"o-1"}',
        subject=None,
        format="json",
        content_type="application/json",
        render_error=None,
        attempts=[
            AttemptRecord(
                1,
                NOW - 20,
                0.012,
                "retry",
                503,
                "HTTP 503",
                {
                    "method": "POST",
                    "url": "https://hooks.acme.example/p",
                    "headers": {"webhook-signature": "***", "Content-Type": "application/json"},
                    "body_bytes": 17,
                },
                {
                    "status": 503,
                    "reason": "Service Unavailable",
                    "headers": {"Content-Type": "application/json"},
                    "body": '{"error":"busy"}',
                    "truncated": False,
                    "latency_ms": 11.5,
                },
            ),
            AttemptRecord(
                2, NOW - 10, 5.0, "fail", None, "connect timeout", {"method": "POST"}, None
            ),
        ],
    )
    text = "\n".join(format_detail(detail, NOW))
    assert "state        dead after 2 attempts" in text
    assert '    "orderId": "o-1"' in text  # the event, pretty
    assert 'TEMPLATE (json, application/json)\n  {\n    "orderId": "o-1"\n  }' in text
    assert "ATTEMPT 1 of 2" in text and "ATTEMPT 2 of 2" in text
    assert "    POST https://hooks.acme.example/p\n    webhook-signature: ***" in text
    assert "    body_bytes: 17" in text
    assert "    503 Service Unavailable\n    latency: 11.5 ms" in text
    assert '      "error": "busy"' in text
    assert "  error: connect timeout" in text and "    (none recorded)" in text


def test_detail_of_a_render_failure_and_an_email() -> None:
    detail = DeliveryDetail(
        summary=summary(plugin="email", state=S.FAILED, last_status=None),
        event={"id": "evt-1"},
        body=None,
        subject=None,
        format="text",
        content_type="text/plain",
        render_error="templates/acme.txt.j2:3: 'items' is undefined",
        attempts=[],
    )
    text = "\n".join(format_detail(detail, time.time()))
    assert "render error: templates/acme.txt.j2:3: 'items' is undefined" in text
    assert "ATTEMPTS\n  none yet" in text
    mail = AttemptRecord(
        1,
        NOW,
        0.2,
        "ok",
        250,
        None,
        {"from": "shop@example.com", "to": ["a@example.com"]},
        {"code": 250, "message": "OK queued"},
    )
    lines = format_detail(
        DeliveryDetail(detail.summary, {}, b"Hello", "Shipped", "text", "text/plain", None, [mail]),
        NOW,
    )
    text = "\n".join(lines)
    assert "subject: Shipped\n  Hello" in text
    assert '    from: shop@example.com\n    to: ["a@example.com"]' in text
    assert "    code: 250\n    message: OK queued" in text


# ---------------------------------------------------------------------- --destination


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("https://acme.example:443", True),
        ("https://acme.example", True),  # the scheme's default port
        ("acme.example", True),  # a bare host: any scheme and port
        ("ACME.example", True),
        ("acme.example:443", True),
        ("acme.example:8443", False),
        ("http://acme.example", False),
        ("other.example", False),
        ("acme", False),
    ],
)
def test_destination_patterns(pattern: str, matches: bool) -> None:
    assert destination_matches(pattern, "https://acme.example:443") is matches


def test_destination_patterns_for_addresses_and_email() -> None:
    assert destination_matches("127.0.0.1", "http://127.0.0.1:38181")
    assert destination_matches("127.0.0.1:38181", "http://127.0.0.1:38181")
    assert destination_matches("::1", "http://[::1]:8080")
    assert destination_matches("[::1]:8080", "http://[::1]:8080")
    assert destination_matches("mail.example", "smtp://mail.example:587")
    assert not destination_matches("mail.example", "webhook:")
    assert destination_matches("webhook:", "webhook:")
