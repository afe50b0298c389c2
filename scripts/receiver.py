#!/usr/bin/env python3
"""A demo webhook receiver: prints every request it gets, answers 200.

.venv/bin/python scripts/receiver.py [PORT]      (default 9999, on 127.0.0.1)
"""

from __future__ import annotations

import sys

from aiohttp import web


async def show(request: web.Request) -> web.Response:
    body = await request.text()
    print(f"--- {request.method} {request.path_qs}", flush=True)
    for name in ("Content-Type", "webhook-id", "webhook-timestamp", "webhook-signature"):
        if name in request.headers:
            print(f"{name}: {request.headers[name]}")
    print(f"\n{body}\n", flush=True)
    return web.Response(text="ok")


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9999
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", show)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        print=lambda _: print(f"receiver listening on http://127.0.0.1:{port}/", flush=True),
    )


if __name__ == "__main__":
    main()
