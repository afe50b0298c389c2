"""`postbackd queue list|show|retry|resend|backfill|hold|release|purge|stats|timers`: Postfix's
operator verbs on the spool, beside the running daemon (its dispatcher picks the changes up
within a second).

`retry` and `resend` take the filters of `requests` (customer, trigger, order, event type,
--since/--until) and `--dry-run` to count first. `backfill` routes stored events through one
trigger of the configuration (`postbackd.backfill`). `timers` lists the ``[[sla]]`` delay
timers still waiting.

The verbs compose with jq: ``queue list --state dead --json | jq -r .id | queue retry -``.
Each says what it did ("retried 3 deliveries"); given explicit ids of which none could be
acted on, it exits 1. `purge` asks first on a terminal and, with no terminal, wants --yes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace

from yarl import URL

from postbackd.commands.requests import list_requests, show_delivery
from postbackd.commands.spool_access import (
    STATE_NAMES,
    CommandFailed,
    ListQuery,
    add_filter_options,
    add_id_arguments,
    add_spool_options,
    add_until_option,
    ask,
    iter_deliveries,
    print_json_line,
    read_ids,
    require_consent,
    resolve_ids,
    run_on_spool,
    short_duration,
    since_argument,
)
from postbackd.commands.timers import add_timer_options, list_timers
from postbackd.spool import MIN_ID_PREFIX, RETRYABLE, DeliveryState, ListFilter, Spool
from postbackd.units import plural


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "queue",
        help="list, show, retry, hold, release or purge deliveries in the spool",
        description="Operator verbs on the spool, usable while the daemon runs. Ids may come "
        "from stdin with '-', one a line.",
    )
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", required=True)

    listing = verbs.add_parser("list", help="deliveries in every state, newest first")
    add_filter_options(listing, default_limit=None)
    _common(listing, _list, read_only=True)

    show = verbs.add_parser("show", help="one delivery: event, template, requests, responses")
    show.add_argument(
        "id", metavar="ID", help=f"delivery id (or its first {MIN_ID_PREFIX}+ characters)"
    )
    show.add_argument("--json", action="store_true", help="the delivery as one JSON object")
    _common(show, _show, read_only=True)

    retry = verbs.add_parser(
        "retry",
        help="make deliveries due now (dead and failed ones start a fresh schedule)",
        description="Make deliveries due now. Dead, failed and cancelled ones start a fresh "
        "retry schedule; failed ones are rendered again with the current template.",
    )
    add_id_arguments(retry)
    retry.add_argument(
        "--destination",
        metavar="HOST",
        help='only deliveries to this destination: "https://host:443", "host:port" or a '
        "bare host (any scheme and port)",
    )
    retry.add_argument(
        "--state",
        choices=[str(state) for state in RETRYABLE],
        help="only deliveries in this state (default: pending, dead and failed)",
    )
    retry.add_argument("--customer", metavar="C", help="only this customer's deliveries")
    _add_narrowing(retry)
    retry.add_argument("--all", action="store_true", help="every pending, dead, failed delivery")
    _common(retry, _retry, f"--destination HOST, --state S, --customer C, {NARROWING} or --all")

    resend = verbs.add_parser(
        "resend",
        help="send delivered (done) postbacks again",
        description="Send done deliveries again, with the same delivery id and payload (the "
        "receiver sees the same webhook-id), or with --rerender the event rendered again with "
        "the trigger's current template. The earlier attempts stay in the request log.",
    )
    add_id_arguments(resend)
    resend.add_argument("--customer", metavar="C", help="only this customer's deliveries")
    _add_narrowing(resend)
    resend.add_argument(
        "--rerender", action="store_true", help="render with the current template, not as sent"
    )
    _common(resend, _resend, f"--customer C or {NARROWING}")

    backfill = verbs.add_parser(
        "backfill",
        help="create a trigger's deliveries for stored events it matches now",
        description="Route the stored events of a time window through one trigger, as if it "
        "had been active when they came: each event it matches now gets the delivery it would "
        "have had (same stable delivery id), rendered with the current template. Events that "
        "already have it are skipped, so running it again sends nothing. Needs the "
        "configuration (-c DIR) with the trigger, active.",
    )
    backfill.add_argument("--trigger", metavar="NAME", required=True, help="the trigger")
    backfill.add_argument(
        "--since",
        metavar="WHEN",
        type=since_argument,
        required=True,
        help='events received since a duration ago ("7d") or an ISO time',
    )
    add_until_option(backfill, "events received")
    backfill.add_argument(
        "--dry-run", action="store_true", help="count what would be created; change nothing"
    )
    add_spool_options(backfill)
    backfill.set_defaults(func=run_backfill)

    hold = verbs.add_parser("hold", help="pending → held: never attempted until released")
    add_id_arguments(hold)
    hold.add_argument("--customer", metavar="C", help="every pending delivery of this customer")
    _add_narrowing(hold)
    _common(hold, _hold, f"--customer C or {NARROWING}")

    release = verbs.add_parser("release", help="held → pending, due now")
    add_id_arguments(release)
    release.add_argument("--customer", metavar="C", help="every held delivery of this customer")
    _add_narrowing(release)
    _common(release, _release, f"--customer C or {NARROWING}")

    purge = verbs.add_parser("purge", help="delete deliveries and their request log")
    add_id_arguments(purge)
    purge.add_argument("--state", choices=STATE_NAMES, help="only deliveries in this state")
    purge.add_argument("--customer", metavar="C", help="only this customer's deliveries")
    purge.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    _common(purge, _purge, "--state S or --customer C")

    timers = verbs.add_parser(
        "timers", help="[[sla]] delay timers: pending ones by due time (--state for others)"
    )
    add_timer_options(timers)
    _common(timers, list_timers, read_only=True)

    stats = verbs.add_parser("stats", help="deliveries per state, oldest pending, events")
    stats.add_argument("--json", action="store_true", help="one JSON object")
    _common(stats, _stats, read_only=True)


Verb = Callable[[Spool, argparse.Namespace], Awaitable[int]]
NARROWING = "--trigger T, --order O, --event-type E, --since WHEN, --until WHEN"


def _add_narrowing(parser: argparse.ArgumentParser) -> None:
    """The request log's filters beyond customer and state, and --dry-run."""
    parser.add_argument("--trigger", metavar="T", help="only this trigger's deliveries")
    parser.add_argument("--order", metavar="O", help="only deliveries of this order id")
    parser.add_argument("--event-type", metavar="E", help="only this event type")
    parser.add_argument(
        "--since",
        metavar="WHEN",
        type=since_argument,
        help='created since a duration ago ("1h", "7d") or an ISO time ("2024-05-01T12:00")',
    )
    add_until_option(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="say how many would change; change nothing"
    )


def _narrowing(args: argparse.Namespace) -> ListFilter:
    return ListFilter(
        trigger=args.trigger,
        order=args.order,
        event_type=args.event_type,
        since=args.since,
        until=args.until,
    )


def _common(
    parser: argparse.ArgumentParser,
    verb: Verb,
    selectors: str | None = None,
    *,
    read_only: bool = False,
) -> None:
    """Spool options, and the verb to run; `selectors` names the ways to say which deliveries
    a verb acts on, when it needs one (it never acts on the whole spool by default). A
    `read_only` verb runs while the configuration has errors (see `spool_path`)."""
    add_spool_options(parser)
    parser.set_defaults(func=run, verb=verb, selectors=selectors, read_only=read_only)


def run(args: argparse.Namespace) -> int:
    if args.selectors is not None and not _selected(args):
        print(
            f"postbackd queue: say which deliveries: ID..., - (ids on stdin) or {args.selectors}",
            file=sys.stderr,
        )
        return 2
    verb: Verb = args.verb
    return run_on_spool(args, lambda spool: verb(spool, args), read_only=args.read_only)


# ---------------------------------------------------------------------- verbs


async def _list(spool: Spool, args: argparse.Namespace) -> int:
    return await list_requests(spool, args)


async def _show(spool: Spool, args: argparse.Namespace) -> int:
    return await show_delivery(spool, args.id, args.json)


async def _retry(spool: Spool, args: argparse.Namespace) -> int:
    ids = await _given_ids(spool, args)
    where = _narrowing(args)
    if args.destination is None:
        destinations: list[str | None] = [None]
    else:
        destinations = [*await _destinations(spool, args.destination, args.state, args.customer)]
    count = 0
    for destination in destinations:
        count += await spool.verbs.retry(
            ids,
            state=args.state,
            customer=args.customer,
            destination=destination,
            where=where,
            dry_run=args.dry_run,
        )
    if args.dry_run:
        return _report_dry_run("retry", count)
    return _report("retried", count, ids, "none of them is dead, failed, held or pending")


async def _resend(spool: Spool, args: argparse.Namespace) -> int:
    ids = await _given_ids(spool, args)
    where = replace(_narrowing(args), customer=args.customer)
    count = await spool.verbs.resend(ids, where=where, rerender=args.rerender, dry_run=args.dry_run)
    if args.dry_run:
        return _report_dry_run("resend", count)
    return _report("resent", count, ids, "none of them is done")


def run_backfill(args: argparse.Namespace) -> int:
    """Load the configuration (the trigger and its template), then backfill on the spool."""
    from postbackd.backfill import BackfillRefused, backfill
    from postbackd.commands.common import open_or_report
    from postbackd.config import ConfigError
    from postbackd.generation import load_generation

    opened = open_or_report(args, stream=sys.stderr)
    if opened is None:
        return 1
    conf_dir, plugins = opened
    try:
        generation = load_generation(conf_dir, plugins, 1)
    except ConfigError as exc:
        for diagnostic in exc.errors:
            print(diagnostic, file=sys.stderr)
        print("postbackd queue backfill: fix the configuration first", file=sys.stderr)
        return 1

    async def command(spool: Spool) -> int:
        try:
            result = await backfill(
                spool,
                generation.router,
                args.trigger,
                since=args.since,
                until=args.until,
                dry_run=args.dry_run,
            )
        except BackfillRefused as exc:
            raise CommandFailed(f"postbackd queue backfill: {exc}") from None
        matched = plural(result.matched, "stored event")
        verb = "matches" if result.matched == 1 else "match"
        print(f"{matched} in the window {verb} trigger {result.trigger}")
        if result.existing:
            print(f"{plural(result.existing, 'of them has', 'of them have')} its delivery already")
        if result.unreadable:
            print(f"skipped {plural(result.unreadable, 'unreadable event')} (see the log)")
        done = "would create" if result.dry_run else "created"
        print(f"{done} {plural(result.added, 'delivery', 'deliveries')}")
        return 0

    args.spool = args.spool if args.spool is not None else generation.config.daemon.spool
    return run_on_spool(args, command)


async def _hold(spool: Spool, args: argparse.Namespace) -> int:
    ids = await _given_ids(spool, args)
    where, dry_run = _narrowing(args), args.dry_run
    count = await spool.verbs.hold(ids, customer=args.customer, where=where, dry_run=dry_run)
    if dry_run:
        return _report_dry_run("hold", count)
    return _report("held", count, ids, "none of them is pending")


async def _release(spool: Spool, args: argparse.Namespace) -> int:
    ids = await _given_ids(spool, args)
    where, dry_run = _narrowing(args), args.dry_run
    count = await spool.verbs.release(ids, customer=args.customer, where=where, dry_run=dry_run)
    if dry_run:
        return _report_dry_run("release", count)
    return _report("released", count, ids, "none of them is held")


async def _purge(spool: Spool, args: argparse.Namespace) -> int:
    stdin_used = "-" in args.ids
    require_consent(yes=args.yes, stdin_used=stdin_used, refusal="not purging")
    ids = await _given_ids(spool, args)
    if not args.yes:
        matching = await _count(spool, ids, args.state, args.customer)
        if matching:
            ask(f"Delete {plural(matching, 'delivery', 'deliveries')} and their request log?")
    count = await spool.verbs.purge(ids, state=args.state, customer=args.customer)
    return _report("purged", count, ids, "none of them is in the spool")


async def _stats(spool: Spool, args: argparse.Namespace) -> int:
    stats = await spool.stats()
    if args.json:
        print_json_line(stats.to_dict())
        return 0
    oldest = stats.oldest_pending_age
    rows = [
        ("deliveries", str(stats.deliveries)),
        *((f"  {state}", str(count)) for state, count in stats.by_state.items()),
        ("oldest pending", "-" if oldest is None else short_duration(oldest)),
        ("events", str(stats.events)),
        ("unmatched events", str(stats.unmatched_events)),
        ("delay timers pending", str(stats.timers_pending)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value.rjust(6)}")
    return 0


# ---------------------------------------------------------------------- helpers


def _selected(args: argparse.Namespace) -> bool:
    return any(
        getattr(args, name, None)
        for name in (
            *("ids", "destination", "state", "customer", "all"),
            *("trigger", "order", "event_type", "since", "until"),
        )
    )


async def _given_ids(spool: Spool, args: argparse.Namespace) -> list[str] | None:
    """The ids of the command line or stdin (prefixes resolved); None when none were given."""
    if not args.ids:
        return None
    return await resolve_ids(spool, read_ids(args.ids))


def _report_dry_run(verb: str, count: int) -> int:
    print(f"would {verb} {plural(count, 'delivery', 'deliveries')} (dry run: nothing changed)")
    return 0


def _report(done: str, count: int, ids: list[str] | None, why_none: str) -> int:
    print(f"{done} {plural(count, 'delivery', 'deliveries')}")
    if ids and count == 0:
        given = plural(len(ids), "delivery id", "delivery ids")
        print(f"nothing {done} among the {given} given: {why_none}", file=sys.stderr)
        return 1
    return 0


async def _count(
    spool: Spool, ids: list[str] | None, state: str | None, customer: str | None
) -> int:
    """How many deliveries a purge with these selectors would delete (for its question)."""
    count = 0
    if ids is None:
        async for _ in iter_deliveries(spool, ListQuery(state=state, customer=customer)):
            count += 1
        return count
    for delivery_id in ids:
        detail = await spool.get_delivery(delivery_id)
        if detail is None:
            continue
        summary = detail.summary
        if (state is None or summary.state == state) and customer in (None, summary.customer):
            count += 1
    return count


async def _destinations(
    spool: Spool, pattern: str, state: str | None, customer: str | None
) -> list[str]:
    """The destinations of unfinished or failed deliveries that `pattern` names."""
    seen: set[str] = set()
    async for summary in iter_deliveries(spool, ListQuery(state=state, customer=customer)):
        if summary.destination and summary.state is not DeliveryState.DONE:
            seen.add(summary.destination)
    matching = sorted(d for d in seen if destination_matches(pattern, d))
    if not matching:
        known = ", ".join(sorted(seen)[:10]) + (", …" if len(seen) > 10 else "") or "none"
        print(
            f"no delivery waiting or failed goes to {pattern!r} (destinations: {known})",
            file=sys.stderr,
        )
    return matching


def destination_matches(pattern: str, destination: str) -> bool:
    """Whether an operator's `pattern` names `destination` (``scheme://host:port``).

    ``https://acme.example`` means port 443; ``acme.example:8443`` any scheme on that port;
    a bare host (or IP address) any scheme and port of it.
    """
    if pattern == destination:
        return True
    target = _split(destination, "://" in destination)
    wanted = _split(pattern, "://" in pattern)
    if target is None or wanted is None:
        return False
    return all(want is None or want == have for want, have in zip(wanted, target, strict=True))


def _split(text: str, with_scheme: bool) -> tuple[str | None, str | None, int | None] | None:
    """(scheme, host, port) of a destination or pattern; None for what is neither."""
    if not with_scheme and text.count(":") > 1 and not text.startswith("["):
        return None, text.lower(), None  # a bare IPv6 address
    try:
        url = URL(text if with_scheme else f"//{text}")
    except ValueError:
        return None
    if not url.host:
        return None
    if with_scheme:
        return url.scheme or None, url.host.lower(), url.port
    return None, url.host.lower(), url.explicit_port
