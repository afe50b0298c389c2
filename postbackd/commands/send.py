"""`postbackd send FILE...`: submit event files to a running daemon over HTTP.

Each file holds one event or a JSON array (as ``POST /v1/events`` takes them); ``-`` reads
stdin. The URL defaults to the configured HTTP source's listener.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from postbackd.commands.common import add_conf_dir_option, admin_base_url, resolve_conf_dir

DEFAULT_URL = "http://127.0.0.1:8787/v1/events"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("send", help="submit event files to a running daemon")
    parser.add_argument("files", nargs="+", metavar="FILE", help="event JSON file(s); - = stdin")
    parser.add_argument(
        "--url", help=f"intake URL (default: from the configuration, else {DEFAULT_URL})"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("POSTBACKD_TOKEN"),
        help="bearer token (default: $POSTBACKD_TOKEN)",
    )
    add_conf_dir_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    url = args.url or _configured_url(args)
    return asyncio.run(_send_all(url, args.files, args.token))


def _configured_url(args: argparse.Namespace) -> str:
    from postbackd.config import ConfigError

    try:
        base, _ = admin_base_url(resolve_conf_dir(args.conf_dir))
    except (ConfigError, OSError):
        return DEFAULT_URL
    return f"{base}/v1/events"


async def _send_all(url: str, files: list[str], token: str | None) -> int:
    import aiohttp

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    failures = 0
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for name in files:
            try:
                body = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
            except OSError as exc:
                print(f"{name}: cannot read: {exc.strerror}", file=sys.stderr)
                failures += 1
                continue
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    text = await response.text()
            except aiohttp.ClientError as exc:
                print(f"{name}: cannot reach {url}: {exc}. Is the daemon running?", file=sys.stderr)
                return 1
            if response.status == 202:
                print(f"{name}: {text}")
            else:
                print(f"{name}: HTTP {response.status}: {text}", file=sys.stderr)
                failures += 1
    return 1 if failures else 0
