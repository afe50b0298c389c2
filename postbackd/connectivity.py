"""`postbackd check --connect`: the troubleshooting checklist as a command.

For SMTP (when a trigger sends email): DNS, TCP, TLS, login and sender, stopping at the step
that fails. For every webhook trigger: resolve its host, apply the SSRF policy, and open a
TCP connection to it. Prints one line per step; returns True when anything failed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from yarl import URL

from postbackd.config import Config
from postbackd.deliveries.email.smtpcheck import check_smtp, format_check
from postbackd.deliveries.webhook.netguard import AddressPolicy, DestinationRefused, GuardedResolver
from postbackd.generation import Plugins

CONNECT_TIMEOUT = 5.0


def check_connectivity(config: Config, plugins: Plugins, out: TextIO = sys.stdout) -> bool:
    plugins.holder.value = config
    plugins.build_deliveries(config.deliveries)
    return asyncio.run(_check(config, plugins, out))


async def _check(config: Config, plugins: Plugins, out: TextIO) -> bool:
    failed = False
    if any(t.delivery == "email" for t in config.triggers.values()):
        email = plugins.deliveries.get("email")
        steps = (
            await email.check_connection() if email is not None else await check_smtp(config.smtp)
        )
        out.write(f"smtp {config.smtp.host}:{config.smtp.port}\n{format_check(steps)}\n")
        failed |= not all(step.ok for step in steps)
    policy = AddressPolicy.from_daemon(config.daemon)
    resolver = GuardedResolver(lambda: policy)
    try:
        for trigger in sorted(config.triggers.values(), key=lambda t: t.name):
            if trigger.delivery != "webhook":
                continue
            line = await _check_webhook(resolver, str(trigger.options.get("url", "")))
            failed |= line.startswith("FAIL")
            out.write(f"{line}  [trigger {trigger.name}]\n")
    finally:
        await resolver.close()
    return failed


async def _check_webhook(resolver: GuardedResolver, url_text: str) -> str:
    url = URL(url_text)
    host, port = url.host or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        await resolver.vet(host, port)
    except DestinationRefused as exc:
        return f"FAIL ssrf  {url_text}: {exc}"
    except OSError as exc:
        return f"FAIL dns   {url_text}: cannot resolve {host}: {exc}"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return f"FAIL tcp  {url_text}: cannot connect to {host}:{port}: {reason}"
    writer.close()
    return f"ok   tcp   {url_text}: connected to {host}:{port}"
