"""What the spool commands (`requests`, `queue`, `erase`) share: opening the configured spool
beside the running daemon, the listing filters, ids from arguments or stdin, and the output.

These commands work on the spool file directly, not through the daemon: it holds the spool's
owner lock, so they open it non-exclusively (SQLite WAL lets both write), and its dispatcher
looks at the spool at least once a second, so a retry or release is acted on within a second.
A missing spool file is reported, never created: a typo must not yield an empty new spool.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from postbackd import jsoncodec
from postbackd.commands.common import add_conf_dir_option, resolve_conf_dir
from postbackd.plugin import SpoolUnavailable
from postbackd.spool import (
    MIN_ID_PREFIX,
    AmbiguousDeliveryId,
    DeliveryIdError,
    DeliveryState,
    DeliverySummary,
    ListFilter,
    Spool,
    SpoolError,
    is_database_url,
    open_spool,
    parse_state,
    spool_missing,
)
from postbackd.units import parse_duration

if TYPE_CHECKING:
    from postbackd.config import Diagnostic

PAGE = 500
FULL_ID_LENGTH = 36  # a delivery id is a UUID (router.delivery_id)
STATE_NAMES = tuple(state.value for state in DeliveryState)


class CommandFailed(Exception):
    """A spool command cannot go on: `message` for stderr, `code` to exit with (1 or 2)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# ---------------------------------------------------------------------- options


def add_spool_options(parser: argparse.ArgumentParser) -> None:
    add_conf_dir_option(parser)
    parser.add_argument(
        "--spool",
        type=spool_target,
        metavar="PATH|URL",
        help="the spool file, or postgresql:// URL, to open (default: [daemon] spool of the "
        "configuration)",
    )


def add_filter_options(parser: argparse.ArgumentParser, *, default_limit: int | None) -> None:
    parser.add_argument("--customer", metavar="C", help="only this customer's deliveries")
    parser.add_argument("--trigger", metavar="T", help="only this trigger's deliveries")
    parser.add_argument(
        "--state",
        metavar="S",
        choices=STATE_NAMES,
        help=f"only this state: {', '.join(STATE_NAMES)}",
    )
    parser.add_argument("--order", metavar="O", help="only deliveries of this order id")
    parser.add_argument(
        "--event-type", metavar="E", help="only this event type (e.g. order.shipped)"
    )
    parser.add_argument(
        "--since",
        metavar="WHEN",
        type=since_argument,
        help='created since a duration ago ("1h", "2d") or an ISO time ("2024-05-01T12:00")',
    )
    add_until_option(parser)
    shown = "all" if default_limit is None else str(default_limit)
    parser.add_argument(
        "--limit",
        metavar="N",
        type=positive_int,
        default=default_limit,
        help=f"at most N deliveries, newest first (default: {shown})",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines, one per delivery")


def add_until_option(parser: argparse.ArgumentParser, what: str = "created") -> None:
    parser.add_argument(
        "--until",
        metavar="WHEN",
        type=since_argument,
        help=f"{what} before a duration ago or an ISO time (same forms as --since)",
    )


def since_argument(text: str) -> float:
    try:
        return parse_since(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_since(text: str, now: float) -> float:
    """A duration back from `now` ("1h", "2d", "90m") or an ISO time (local when no offset)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f'{text!r} is neither a duration ("1h", "2d") nor an ISO time ("2024-05-01T12:00")'
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The listing filters of a command line; `filters()` as `Spool.list_deliveries` takes them."""

    state: str | None = None
    customer: str | None = None
    trigger: str | None = None
    order: str | None = None
    event_type: str | None = None
    since: float | None = None
    until: float | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ListQuery:
        return cls(
            state=args.state,
            customer=args.customer,
            trigger=args.trigger,
            order=args.order,
            event_type=args.event_type,
            since=args.since,
            until=args.until,
        )

    def filters(self) -> ListFilter:
        """ValueError names the known states when `state` is not one."""
        fields = asdict(self)
        state = fields.pop("state")
        return ListFilter(state=None if state is None else parse_state(state), **fields)


# ---------------------------------------------------------------------- running


SpoolCommand = Callable[[Spool], Awaitable[int]]


def run_on_spool(
    args: argparse.Namespace, command: SpoolCommand, *, read_only: bool = False
) -> int:
    """Open the spool `args` name, run `command` on it, close it; errors become exit codes.

    A `read_only` command (the request log, stats) also runs while the configuration has
    errors: it finds the spool in what can be read (`spool_path`).
    """
    try:
        path = spool_path(args, read_only=read_only)
        return asyncio.run(_with_spool(path, command))
    except CommandFailed as exc:
        print(exc.message, file=sys.stderr)
        return exc.code
    except (SpoolError, SpoolUnavailable) as exc:
        print(f"postbackd: {exc}", file=sys.stderr)
        return 1


def spool_target(text: str) -> Path | str:
    """A spool named on the command line: a database URL as given, else a file path."""
    return text if is_database_url(text) else Path(text)


async def _with_spool(path: Path | str, command: SpoolCommand) -> int:
    spool = await open_spool(path)
    try:
        return await command(spool)
    finally:
        await spool.close()


def spool_path(args: argparse.Namespace, *, read_only: bool = False) -> Path | str:
    """`--spool PATH|URL`, else ``[daemon] spool`` of the configuration; a file must exist.

    When the configuration has errors, a command that changes the spool refuses (the setting
    may be in the broken file, and the wrong spool must not be changed); a `read_only` one
    warns on stderr and takes the setting from the files that can be read.
    """
    if args.spool is not None:
        path: Path | str = args.spool
        if spool_missing(path):
            raise CommandFailed(f"spool {path} not found: give the path of an existing spool file")
        return path
    from postbackd.config import ConfigError, load_config

    conf_dir = resolve_conf_dir(args.conf_dir)
    try:
        path = load_config(conf_dir, expand_secrets=False).daemon.spool
    except ConfigError as exc:
        errors = "\n".join(str(diagnostic) for diagnostic in exc.errors)
        if not read_only or not conf_dir.is_dir():
            raise CommandFailed(
                f"{errors}\ncannot find the spool in this configuration: fix it, or give the "
                "spool file with --spool PATH"
            ) from None
        path = _readable_spool_setting(conf_dir, exc.errors)
    if spool_missing(path):
        raise CommandFailed(
            f"spool {path} not found ([daemon] spool of {conf_dir}): is this the daemon's "
            "configuration (-c DIR)? The daemon creates it at its first start; or give the "
            "file with --spool PATH"
        )
    return path


WARNINGS_SHOWN = 5


def _readable_spool_setting(conf_dir: Path, errors: Sequence[Diagnostic]) -> Path:
    """``[daemon] spool`` as far as the files that parse tell (else the default), after a
    warning on stderr that names the configuration's errors."""
    from postbackd.config import default_spool, readable_spool_setting

    path, some_broken = readable_spool_setting(conf_dir)
    shown = [f"  {diagnostic}" for diagnostic in errors[:WARNINGS_SHOWN]]
    if len(errors) > WARNINGS_SHOWN:
        shown.append(f"  … and {len(errors) - WARNINGS_SHOWN} more ('postbackd check' lists all)")
    lines = [
        f"postbackd: warning: the configuration in {conf_dir} has errors:",
        *shown,
    ]
    if path is None:
        path = default_spool(os.environ)
        if some_broken:
            lines.append(
                f"postbackd: warning: no [daemon] spool in the files that can be read; trying "
                f"the default {path} (give --spool PATH if a broken file sets it)"
            )
    lines.append(f"postbackd: warning: reading the spool {path} all the same")
    print("\n".join(lines), file=sys.stderr)
    return path


async def iter_deliveries(
    spool: Spool, query: ListQuery, limit: int | None = None
) -> AsyncIterator[DeliverySummary]:
    """Deliveries matching `query`, newest first, a page at a time (never all in memory)."""
    cursor: str | None = None
    left = limit
    filters = query.filters()
    while left is None or left > 0:
        size = PAGE if left is None else min(PAGE, left)
        page, cursor = await spool.list_deliveries(filters, limit=size, cursor=cursor)
        for summary in page:
            yield summary
        if left is not None:
            left -= len(page)
        if cursor is None:
            return


# ---------------------------------------------------------------------- ids


def add_id_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "ids",
        nargs="*",
        metavar="ID",
        help=f"delivery ids (or their first {MIN_ID_PREFIX}+ characters); - reads ids from "
        "stdin, one a line",
    )


def read_ids(values: Sequence[str], stdin: Iterable[str] | None = None) -> list[str]:
    """The ids of the command line, ``-`` standing for stdin (one a line, blanks ignored)."""
    ids: list[str] = []
    for value in values:
        if value == "-":
            lines = sys.stdin if stdin is None else stdin
            ids.extend(line.strip() for line in lines if line.strip())
        else:
            ids.append(value.strip())
    return list(dict.fromkeys(ids))


async def resolve_ids(spool: Spool, ids: Sequence[str]) -> list[str]:
    """Whole ids as given; a shorter one (a prefix, `MIN_ID_PREFIX` characters or more)
    replaced by the one delivery id it starts (`Spool.resolve_delivery_id`).

    Raises `CommandFailed` listing every prefix that matches no delivery or several (with
    the ids it starts).
    """
    resolved: list[str] = []
    problems: list[str] = []
    for given in ids:
        if len(given) >= FULL_ID_LENGTH:  # a whole id, as `queue list --json | jq` gives
            resolved.append(given)
            continue
        try:
            resolved.append(await spool.resolve_delivery_id(given))
        except DeliveryIdError as exc:
            problems.append(id_problem(exc))
    if problems:
        raise CommandFailed("\n".join(problems))
    return list(dict.fromkeys(resolved))


def id_problem(exc: DeliveryIdError) -> str:
    """What to say on stderr about an id that names no delivery or several."""
    if isinstance(exc, AmbiguousDeliveryId):
        lines = [f"delivery id {exc.given} is ambiguous; it starts:"]
        lines += [f"  {match}" for match in exc.matches] + (["  …"] if exc.more else [])
        return "\n".join([*lines, "give more of the id"])
    if len(exc.given) < MIN_ID_PREFIX:
        return f"no delivery {exc.given} (an id prefix needs at least {MIN_ID_PREFIX} characters)"
    return f"no delivery id starts with {exc.given!r}"


# ---------------------------------------------------------------------- asking


def require_consent(*, yes: bool, stdin_used: bool, refusal: str) -> None:
    """Without --yes there must be a terminal to ask on; else refuse up front (exit 2)."""
    if not yes and (stdin_used or not sys.stdin.isatty()):
        raise CommandFailed(f"{refusal}: no terminal to ask on; add --yes to go ahead", 2)


def ask(question: str) -> None:
    """Put `question` on the terminal; anything but yes raises `CommandFailed`."""
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise CommandFailed("cancelled: nothing changed")


# ---------------------------------------------------------------------- output


def print_json_line(data: Any) -> None:
    sys.stdout.write(jsoncodec.dumps(data).decode() + "\n")


def short_duration(seconds: float) -> str:
    """A compact age or delay: "12s", "4m05s", "3h05m", "2d03h"."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
