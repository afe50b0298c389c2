"""`postbackd render TEMPLATE`: render a template for an event file or a sample, to stdout.

Email templates print ``Subject: …``, a blank line, then the body. Warnings go to stderr; a
render error goes to stderr with its line and column and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from postbackd.commands.common import add_conf_dir_option, add_plugin_options, open_or_report
from postbackd.events import Event, EventRejected, decode_json, parse_event


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("render", help="render a template for an event or a sample")
    parser.add_argument("template", help="template name (or builtin:…)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--event", metavar="FILE", help="event JSON file; - reads stdin")
    source.add_argument("--sample", metavar="TYPE", help="a sample event type (see `samples`)")
    parser.add_argument("--customer", help="render as this customer (default: the event's)")
    add_conf_dir_option(parser)
    add_plugin_options(parser)
    parser.set_defaults(func=run)


def read_event_arg(event_file: str | None, sample: str | None, customer: str | None) -> Event:
    """The event named on the command line (file, stdin or sample); raises ValueError."""
    from postbackd.samples import load_sample, sample_types

    if sample is not None:
        try:
            raw = load_sample(sample)
        except KeyError:
            raise ValueError(
                f"unknown sample type {sample!r}; known: {', '.join(sample_types())}"
            ) from None
        where = f"sample {sample}"
    else:
        assert event_file is not None
        try:
            data = sys.stdin.buffer.read() if event_file == "-" else Path(event_file).read_bytes()
        except OSError as exc:
            raise ValueError(f"{event_file}: cannot read: {exc.strerror}") from None
        where = "stdin" if event_file == "-" else event_file
        try:
            raw = decode_json(data)
        except EventRejected as exc:
            raise ValueError(f"{where}: {exc}") from None
    if customer is not None and isinstance(raw, dict):
        raw = {**raw, "customer": customer}
    try:
        return parse_event(raw)
    except EventRejected as exc:
        raise ValueError(f"{where}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from postbackd.config import ConfigError, load_config
    from postbackd.generation import build_engine
    from postbackd.templates import RenderError

    try:
        event = read_event_arg(args.event, args.sample, args.customer)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    opened = open_or_report(args, stream=sys.stderr)
    if opened is None:
        return 1
    conf_dir, plugins = opened
    try:
        config = load_config(conf_dir, resolve_secret=plugins.resolve_secret)
    except ConfigError as exc:
        for diagnostic in exc.errors:
            print(diagnostic, file=sys.stderr)
        return 1
    engine = build_engine(config, plugins.host)
    if not engine.has(args.template):
        print(
            f"no template named {args.template!r}; known: {', '.join(engine.names())}",
            file=sys.stderr,
        )
        return 1
    try:
        rendered = engine.render(args.template, event, config.customers.get(event.customer))
    except RenderError as exc:
        print(f"render error: {exc}", file=sys.stderr)
        return 1
    for warning in rendered.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out = sys.stdout
    if rendered.subject is not None:
        out.write(f"Subject: {rendered.subject}\n\n")
    out.write(rendered.body.decode("utf-8"))
    if not rendered.body.endswith(b"\n"):
        out.write("\n")
    return 0
