"""The single tables of a configuration: `[daemon]`, `[smtp]` and `[ui]`, each read from a
`Table` into its frozen value (``[sources.NAME]`` and ``[deliveries.NAME]`` belong to their
plugins: `postbackd.config.plugin_tables`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import fields
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from postbackd.config.model import (
    DaemonConfig,
    Network,
    SmtpConfig,
    UiConfig,
    is_loopback,
    parse_listen,
)
from postbackd.config.table import Table

DAEMON_KEYS = frozenset(f.name for f in fields(DaemonConfig))
SMTP_KEYS = frozenset(f.name for f in fields(SmtpConfig)) - {"location"}
UI_KEYS = frozenset(f.name for f in fields(UiConfig))
TLS_MODES = ("starttls", "implicit", "none")
SYNCHRONOUS = ("FULL", "NORMAL")


def build_daemon(table: Table | None, default_spool: Path) -> DaemonConfig:
    """The `[daemon]` table, or the defaults when there is none."""
    if table is None:
        return DaemonConfig(spool=default_spool)
    table.check_keys(DAEMON_KEYS)
    d = DaemonConfig(spool=default_spool)
    proxy = table.string("proxy")
    if proxy is not None:
        parts = urlsplit(proxy)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            table.error('expected an http:// or https:// URL like "http://127.0.0.1:4750"', "proxy")
    return DaemonConfig(
        spool=table.path_value("spool") or default_spool,
        plugin_dirs=_paths(table, "plugin_dirs"),
        allow_private_destinations=table.boolean(
            "allow_private_destinations", d.allow_private_destinations
        ),
        allow_destinations=_networks(table, "allow_destinations"),
        # 0 turns the breaker off (DESIGN §6)
        breaker_failures=table.integer("breaker_failures", d.breaker_failures, minimum=0),
        breaker_cooldown=table.duration("breaker_cooldown", d.breaker_cooldown),
        retention=table.duration("retention", d.retention),
        admin_listen=table.listen("admin_listen", d.admin_listen),
        admin_token=table.token("admin_token"),
        concurrency=table.integer("concurrency", d.concurrency),
        per_destination=table.integer("per_destination", d.per_destination),
        grace=table.duration("grace", d.grace),
        min_free=table.size("min_free", d.min_free),
        proxy=proxy,
        synchronous=cast(Any, table.choice("synchronous", SYNCHRONOUS, d.synchronous)),
    )


def check_admin_listener(
    table: Table | None, admin_listen: str, admin_token: str | None, served_by_source: bool
) -> None:
    """An admin listener off loopback needs a token (it serves the admin API and the UI).

    Only ``[daemon] admin_listen`` is judged here, and only when it is opened: when a source
    serves the admin API on its own listener (`AdminEndpoint`), that one is judged instead
    (`postbackd.config.plugin_tables`).
    """
    if table is None or served_by_source or admin_token or "admin_listen" not in table.data:
        return
    if table.secret_failed("admin_token") or "admin_token" in table.data:
        return  # a token that failed or is blank is reported at its own line
    try:
        host, _ = parse_listen(admin_listen)
    except ValueError:
        return  # reported by build_daemon
    if not is_loopback(host):
        table.error(
            f"listens on {host}, which is not loopback, without a token: anyone who can reach "
            'it could use the admin API and the UI. Set admin_token = "${env:POSTBACKD_ADMIN_'
            'TOKEN}" (or listen on 127.0.0.1 behind a reverse proxy)',
            "admin_listen",
        )


def _paths(table: Table, key: str) -> tuple[Path, ...]:
    names = table.strings(key) or []
    return tuple((table.file.directory / name).resolve() for name in names)


def _networks(table: Table, key: str) -> tuple[Network, ...]:
    networks: list[Network] = []
    for index, text in enumerate(table.strings(key) or []):
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=True))
        except ValueError as exc:
            hint = ""
            try:
                hint = f' (did you mean "{ipaddress.ip_network(text.strip(), strict=False)}"?)'
            except ValueError:
                pass
            table.error(f'not a network like "10.1.2.0/24" or an address: {exc}{hint}', key, index)
    return tuple(networks)


def build_smtp(table: Table | None) -> SmtpConfig:
    if table is None:
        return SmtpConfig()
    table.check_keys(SMTP_KEYS)
    d = SmtpConfig()
    port = table.integer("port", d.port)
    if port > 65535:
        table.error(f"not a port number: {port}", "port")
    from_address = table.string("from_address", d.from_address) or d.from_address
    if "@" not in from_address:
        table.error(f"not an email address: {table.shown('from_address')}", "from_address")
    username = table.string("username")
    password = table.string("password")
    if (username is None) != (password is None) and not table.secret_failed("password"):
        missing = "password" if password is None else "username"
        table.error(
            f"username and password go together: set {missing} as well"
            + (' (e.g. password = "${env:SMTP_PASSWORD}")' if missing == "password" else ""),
            "username" if missing == "password" else "password",
        )
    return SmtpConfig(
        host=table.string("host", d.host) or d.host,
        port=port,
        username=username,
        password=password,
        from_address=from_address,
        from_name=table.string("from_name"),
        tls=cast(Any, table.choice("tls", TLS_MODES, d.tls)),
        timeout=table.duration("timeout", d.timeout),
        location=table.location,
    )


def build_ui(table: Table | None) -> UiConfig:
    if table is None:
        return UiConfig()
    table.check_keys(UI_KEYS)
    return UiConfig(enabled=table.boolean("enabled", UiConfig().enabled))
