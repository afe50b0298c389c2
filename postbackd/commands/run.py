"""`postbackd run`: the daemon in the foreground (systemd runs it as Type=notify)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postbackd.commands.common import add_conf_dir_option, add_plugin_options, open_or_report


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the daemon in the foreground")
    add_conf_dir_option(parser)
    add_plugin_options(parser)
    # internal: how the main process starts its delivery workers (`[daemon] workers`)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--attempt-worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from postbackd.daemon import Daemon

    opened = open_or_report(args, stream=sys.stderr)
    if opened is None:
        return 1
    conf_dir, plugins = opened
    if args.attempt_worker is not None:
        from postbackd.workers.serve import AttemptWorker

        process: Any = AttemptWorker(conf_dir, plugins, args.attempt_worker)
    else:
        process = Daemon(
            conf_dir, plugins, worker_argv=worker_arguments(args, conf_dir), worker=args.worker
        )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(process.run())


def worker_arguments(args: argparse.Namespace, conf_dir: Path) -> list[str]:
    """The arguments of this daemon's delivery workers: the same directory, log level and
    plugin options (`postbackd.workers` adds ``--worker K``)."""
    plugin_options = ["--no-plugins"] if args.no_plugins else []
    return ["--log-level", args.log_level, "run", "-c", str(conf_dir), *plugin_options]


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when the `speedups` extra is installed, else the standard loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
