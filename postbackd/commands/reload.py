"""`postbackd reload`: ask the running daemon to reload its configuration (ExecReload).

Exits 0 when the new configuration was applied, 1 with the errors when it was rejected (the
daemon keeps running the old one), 1 when the daemon cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from postbackd.commands.common import add_conf_dir_option, admin_base_url, resolve_conf_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reload", help="ask the running daemon to reload its config")
    add_conf_dir_option(parser)
    parser.add_argument("--url", help="admin API base URL (default: from the configuration)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from postbackd.config import ConfigError

    conf_dir = resolve_conf_dir(args.conf_dir)
    try:
        base, token = admin_base_url(conf_dir)
    except ConfigError as exc:
        if not args.url:
            for diagnostic in exc.errors:
                print(diagnostic, file=sys.stderr)
            return 1
        base, token = args.url, None
    return asyncio.run(_reload(args.url or base, token))


async def _reload(base: str, token: str | None) -> int:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(f"{base.rstrip('/')}/v1/reload", headers=headers) as response,
        ):
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        print(f"cannot reach the daemon at {base}: {exc}. Is it running?", file=sys.stderr)
        return 1
    if response.status == 200 and body.get("ok"):
        print(f"reloaded: generation {body['generation']}")
        return 0
    error = body.get("error") or f"HTTP {response.status}"
    print(
        f"reload rejected; the daemon keeps generation {body.get('generation')}:\n{error}",
        file=sys.stderr,
    )
    return 1
