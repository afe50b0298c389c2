"""The `postbackd` command line: argparse front end; each subcommand lives in `commands/`.

Every command module exposes ``add_parser(subparsers)`` (which sets ``func`` on its parser)
and a ``run(args) -> int``. Output goes to stdout, logs and diagnostics to stderr. Exit codes:
0 ok, 1 findings or failure, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from postbackd import __version__
from postbackd.commands import (
    check,
    customer,
    erase,
    plugins,
    queue,
    reload,
    render,
    requests,
    run,
    samples,
    send,
    spool,
    test,
)
from postbackd.logs import configure_logging

COMMANDS: tuple[ModuleType, ...] = (
    run,
    check,
    render,
    test,
    send,
    reload,
    samples,
    customer,
    plugins,
    requests,
    queue,
    erase,
    spool,
)
"""In the order `postbackd --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postbackd",
        description="Order-status postbacks (webhooks and email) for print service providers.",
    )
    parser.add_argument("--version", action="version", version=f"postbackd {__version__}")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="how much to log on stderr (default: info)",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
