"""`postbackd requests`: the request log in a terminal, `requests show ID` for one delivery, and
`requests timers` for the ``[[sla]]`` delay timers still waiting (as `queue timers`).

The listing is the web UI's Requests page: newest first, one aligned line per delivery, cut to
the terminal's width (``--json`` gives every field as JSON lines, for jq). `show` prints the
four stages an operator debugs with (DESIGN §6): the original event, the template processing,
and for each attempt the final request and the system's response, as the spool recorded them
(secrets were masked before they were stored).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from postbackd.commands.spool_access import (
    PAGE,
    CommandFailed,
    ListQuery,
    add_filter_options,
    add_spool_options,
    id_problem,
    iter_deliveries,
    print_json_line,
    run_on_spool,
    short_duration,
)
from postbackd.commands.timers import list_timers
from postbackd.spool import (
    MIN_ID_PREFIX,
    AmbiguousDeliveryId,
    AttemptRecord,
    DeliveryDetail,
    DeliveryIdError,
    DeliveryState,
    DeliverySummary,
    Spool,
)
from postbackd.units import plural

INDENT = "  "
SHORT_ID = 8


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "requests",
        help="the request log: deliveries newest first; 'requests show ID' for one",
        description="List deliveries newest first, or 'requests show ID' for one delivery's "
        "event, template processing, requests and responses. Reads the spool directly; the "
        "daemon may be running.",
        usage="postbackd requests [options] [show ID | timers]",
    )
    parser.add_argument(
        "words",
        nargs="*",
        metavar="show ID | timers",
        help="show one delivery; or list the pending [[sla]] delay timers",
    )
    add_spool_options(parser)
    add_filter_options(parser, default_limit=50)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.words:
        return run_on_spool(args, lambda spool: list_requests(spool, args), read_only=True)
    if args.words == ["timers"]:
        shown = argparse.Namespace(state="pending", limit=args.limit or 100, json=args.json)
        return run_on_spool(args, lambda spool: list_timers(spool, shown), read_only=True)
    if len(args.words) == 2 and args.words[0] == "show":
        delivery_id = args.words[1]
        return run_on_spool(
            args, lambda spool: show_delivery(spool, delivery_id, args.json), read_only=True
        )
    print(
        f"postbackd requests: unexpected {' '.join(args.words)!r}; use 'requests [options]', "
        "'requests show ID' or 'requests timers'",
        file=sys.stderr,
    )
    return 2


async def list_requests(spool: Spool, args: argparse.Namespace) -> int:
    """Print the matching deliveries (a table, or JSON lines with --json)."""
    query = ListQuery.from_args(args)
    if args.json:
        async for summary in iter_deliveries(spool, query, args.limit):
            print_json_line(summary.to_dict())
        return 0
    table = TableWriter(width=terminal_width(), now=time.time())
    page: list[DeliverySummary] = []
    printed = False
    async for summary in iter_deliveries(spool, query, args.limit):
        page.append(summary)
        if len(page) == PAGE:
            print("\n".join(table.lines(page)))
            printed, page = True, []
    if page:
        print("\n".join(table.lines(page)))
    elif not printed:
        print("no deliveries match", file=sys.stderr)
    return 0


async def show_delivery(spool: Spool, delivery_id: str, as_json: bool) -> int:
    """Print one delivery's four stages; an unknown id is an error (exit 1)."""
    try:
        resolved = await spool.resolve_delivery_id(delivery_id)
    except DeliveryIdError as exc:
        if isinstance(exc, AmbiguousDeliveryId) or len(delivery_id) < MIN_ID_PREFIX:
            raise CommandFailed(id_problem(exc)) from None
        resolved = None
    detail = None if resolved is None else await spool.get_delivery(resolved)
    if detail is None:
        raise CommandFailed(
            f"no delivery {delivery_id}: it may have been pruned or purged "
            "(list them with 'postbackd requests')"
        )
    if as_json:
        print_json_line(detail.to_dict())
    else:
        print("\n".join(format_detail(detail, time.time())))
    return 0


# ---------------------------------------------------------------------- the table


def terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def format_time(timestamp: float, now: float) -> str:
    """Local time, short: "10:33:22" today, "11-28 10:33" this year, else "2023-11-28"."""
    moment, today = datetime.fromtimestamp(timestamp), datetime.fromtimestamp(now)
    if moment.date() == today.date():
        return moment.strftime("%H:%M:%S")
    if moment.year == today.year:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d")


def short_destination(destination: str | None) -> str:
    """HTTPS, the usual case, without its scheme and default port ("acme.example",
    "acme.example:8443"); anything else as stored, so plain http stands out."""
    if not destination:
        return "-"
    if not destination.startswith("https://"):
        return destination
    host = destination.removeprefix("https://")
    return host.removesuffix(":443")


def last_cell(summary: DeliverySummary, now: float) -> str:
    """What happened last, and what comes next when that is not obvious from the state."""
    parts: list[str] = []
    if summary.state is DeliveryState.HELD and summary.held_reason:
        parts.append(f"[{summary.held_reason}]")
    if summary.last_status is not None:
        parts.append(str(summary.last_status))
    if summary.last_error:
        parts.append(summary.last_error)
    if summary.state is DeliveryState.PENDING and summary.next_attempt_at is not None:
        wait = summary.next_attempt_at - now
        parts.append(f"(next in {short_duration(wait)})" if wait >= 1 else "(due)")
    return " ".join(parts) or "-"


COLUMNS = ("TIME", "ID", "CUSTOMER", "TRIGGER", "EVENT", "DESTINATION", "STATE", "TRY", "LAST")
RIGHT_ALIGNED = frozenset({"TRY"})
SHRINK_ORDER = (
    ("LAST", 30),
    ("DESTINATION", 16),
    ("TRIGGER", 12),
    ("CUSTOMER", 10),
    ("EVENT", 13),
    ("LAST", 16),
    ("DESTINATION", 10),
    ("TRIGGER", 8),
    ("CUSTOMER", 8),
    ("LAST", 6),
)
"""Which column gives up room first, and down to how many characters, when a table is too
wide: the last error before the rest, as it is the longest and `show` has it in full."""
GAP = "  "


def table_cells(summary: DeliverySummary, now: float) -> list[str]:
    return [
        format_time(summary.created_at, now),
        summary.id[:SHORT_ID],
        summary.customer,
        summary.trigger,
        summary.event_type,
        short_destination(summary.destination),
        str(summary.state),
        str(summary.attempts),
        last_cell(summary, now),
    ]


class TableWriter:
    """Aligned lines that fit in `width` columns, long values cut with "…", page by page.

    The first page fixes the column widths (and brings the header), so a long listing is
    printed as it is read instead of being held in memory to measure.
    """

    def __init__(self, *, width: int, now: float) -> None:
        self.width = width
        self.now = now
        self._widths: dict[str, int] | None = None

    def lines(self, summaries: Sequence[DeliverySummary]) -> list[str]:
        rows = [[_one_line(cell) for cell in table_cells(s, self.now)] for s in summaries]
        if self._widths is None:
            self._widths = self._measure(rows)
            rows.insert(0, list(COLUMNS))
        widths = self._widths
        return [
            GAP.join(
                _fit(cell, widths[name], right=name in RIGHT_ALIGNED)
                for cell, name in zip(row, COLUMNS, strict=True)
            ).rstrip()
            for row in rows
        ]

    def _measure(self, rows: list[list[str]]) -> dict[str, int]:
        widths = {
            name: max([len(name), *(len(row[i]) for row in rows)]) for i, name in enumerate(COLUMNS)
        }
        excess = sum(widths.values()) + len(GAP) * (len(COLUMNS) - 1) - self.width
        for name, floor in SHRINK_ORDER:
            cut = min(max(0, excess), max(0, widths[name] - max(floor, len(name))))
            widths[name] -= cut
            excess -= cut
        return widths


def format_table(summaries: Sequence[DeliverySummary], *, width: int, now: float) -> list[str]:
    """One table of `summaries`, header first (see `TableWriter`)."""
    return TableWriter(width=width, now=now).lines(summaries)


def _fit(text: str, width: int, *, right: bool = False) -> str:
    if len(text) > width:
        text = text[: max(0, width - 1)] + "…"
    return text.rjust(width) if right else text.ljust(width)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------- the four stages


def format_detail(detail: DeliveryDetail, now: float) -> list[str]:
    s = detail.summary
    lines = [f"DELIVERY {s.id}"]
    lines += _fields(
        [
            ("customer", s.customer),
            ("trigger", f"{s.trigger} ({s.plugin})"),
            ("event", f"{s.event_id}  {s.event_type}"),
            ("order", s.order_id),
            ("destination", s.destination),
            ("created", _stamp(s.created_at)),
            ("state", _state_line(detail, now)),
            ("last", " ".join(str(x) for x in (s.last_status, s.last_error) if x) or None),
        ]
    )
    lines += ["", "EVENT", *_indented(_pretty_json(detail.event))]
    lines += ["", f"TEMPLATE ({detail.format}, {detail.content_type})"]
    if detail.render_error is not None:
        lines.append(f"{INDENT}render error: {detail.render_error}")
    if detail.subject is not None:
        lines.append(f"{INDENT}subject: {detail.subject}")
    if detail.body is not None:
        body = detail.body.decode("utf-8", "replace")
        lines += _indented(_pretty_body(body, detail.content_type))
    elif detail.render_error is None:
        lines.append(f"{INDENT}(no body stored)")
    if not detail.attempts:
        lines += ["", "ATTEMPTS", f"{INDENT}none yet"]
    for attempt in detail.attempts:
        lines += ["", *format_attempt(attempt, len(detail.attempts))]
    return lines


def format_attempt(attempt: AttemptRecord, total: int) -> list[str]:
    title = (
        f"ATTEMPT {attempt.number} of {total}  {_stamp(attempt.started_at)}  "
        f"{attempt.outcome}  {attempt.duration * 1000:.0f} ms"
    )
    lines = [title]
    if attempt.error:
        lines.append(f"{INDENT}error: {attempt.error}")
    lines.append(f"{INDENT}request:")
    lines += _indented(_request_lines(attempt.request), 2)
    lines.append(f"{INDENT}response:")
    lines += _indented(_response_lines(attempt.response, attempt.status), 2)
    return lines


def _request_lines(request: Mapping[str, Any] | None) -> list[str]:
    if not request:
        return ["(none: no request was made)"]
    lines = []
    if "method" in request and "url" in request:
        lines.append(f"{request['method']} {request['url']}")
    lines += _headers(request.get("headers"))
    lines += _other_keys(request, {"method", "url", "headers"})
    return lines


def _response_lines(response: Mapping[str, Any] | None, status: int | None) -> list[str]:
    if not response:
        return [f"status {status}" if status is not None else "(none recorded)"]
    lines = []
    if "status" in response:
        reason = response.get("reason") or ""
        lines.append(f"{response['status']} {reason}".rstrip())
    if "error" in response:
        lines.append(f"network error: {response['error']}")
    if "latency_ms" in response:
        lines.append(f"latency: {response['latency_ms']} ms")
    lines += _headers(response.get("headers"))
    lines += _other_keys(response, {"status", "reason", "error", "latency_ms", "headers", "body"})
    body = response.get("body")
    if body:
        note = " (first part only)" if response.get("truncated") else ""
        lines.append(f"body{note}:")
        content_type = _header(response.get("headers"), "content-type")
        lines += _indented(_pretty_body(str(body), content_type))
    return lines


def _headers(headers: Any) -> list[str]:
    if not isinstance(headers, Mapping):
        return []
    return [f"{name}: {value}" for name, value in headers.items()]


def _header(headers: Any, name: str) -> str:
    if isinstance(headers, Mapping):
        for key, value in headers.items():
            if str(key).lower() == name:
                return str(value)
    return ""


def _other_keys(data: Mapping[str, Any], shown: set[str]) -> list[str]:
    lines = []
    for key, value in data.items():
        if key in shown or key == "truncated":
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        lines.append(f"{key}: {text}")
    return lines


def _state_line(detail: DeliveryDetail, now: float) -> str:
    s = detail.summary
    line = f"{s.state} after {plural(s.attempts, 'attempt')}"
    if s.state is DeliveryState.PENDING and s.next_attempt_at is not None:
        wait = s.next_attempt_at - now
        line += f", next in {short_duration(wait)}" if wait >= 1 else ", due now"
    if s.state is DeliveryState.HELD and s.held_reason:
        line += f" ({s.held_reason})"
    if s.finished_at is not None:
        line += f", finished {_stamp(s.finished_at)}"
    return line


def _fields(pairs: list[tuple[str, str | None]]) -> list[str]:
    width = max(len(name) for name, _ in pairs)
    return [f"{INDENT}{name.ljust(width)}  {value}" for name, value in pairs if value]


def _stamp(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _pretty_json(value: Any) -> list[str]:
    return json.dumps(value, indent=2, ensure_ascii=False).splitlines()


def _pretty_body(body: str, content_type: str) -> list[str]:
    """A JSON body indented for reading; anything else as it is."""
    if "json" in content_type.lower():
        try:
            return _pretty_json(json.loads(body))
        except ValueError:
            pass
    return body.splitlines() or [""]


def _indented(lines: list[str], depth: int = 1) -> list[str]:
    prefix = INDENT * depth
    return [f"{prefix}{line}" if line else "" for line in lines]
