"""The single tables of a configuration: `[daemon]`, `[smtp]`, `[ui]` and `[alerts]`, each read
from a `Table` into its frozen value (``[sources.NAME]`` and ``[deliveries.NAME]`` belong to their
plugins: `postbackd.config.plugin_tables`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from postbackd.config.model import (
    AlertsConfig,
    AllowedDestination,
    DaemonConfig,
    Network,
    SmtpConfig,
    UiConfig,
    is_database_url,
    is_loopback,
    normal_host,
    parse_listen,
)
from postbackd.config.table import Table

DAEMON_KEYS = frozenset(f.name for f in fields(DaemonConfig))
SMTP_KEYS = frozenset(f.name for f in fields(SmtpConfig)) - {"location"}
UI_KEYS = frozenset(f.name for f in fields(UiConfig))
ALERTS_KEYS = frozenset(f.name for f in fields(AlertsConfig)) - {"location"}
MIN_ALERT_DELAY = 1.0  # the monitor looks once a second: a shorter setting would promise more
ALERT_DELAY_EXAMPLES = {
    "destination_failing_after": "15m",
    "source_down_after": "1m",
    "delivery_dead_window": "1m",
}
TLS_MODES = ("starttls", "implicit", "none")
SYNCHRONOUS = ("FULL", "NORMAL")
MIN_LEASE = 1.0
MAX_WORKERS = 64
HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?")


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
    spool = _spool(table) or default_spool
    return DaemonConfig(
        spool=spool,
        plugin_dirs=_paths(table, "plugin_dirs"),
        allow_private_destinations=table.boolean(
            "allow_private_destinations", d.allow_private_destinations
        ),
        allow_destinations=_allowed_destinations(table, "allow_destinations"),
        # 0 turns the breaker off (DESIGN §6)
        breaker_failures=table.integer("breaker_failures", d.breaker_failures, minimum=0),
        breaker_cooldown=table.duration("breaker_cooldown", d.breaker_cooldown),
        retention=table.duration("retention", d.retention),
        admin_listen=table.listen("admin_listen", d.admin_listen),
        admin_token=table.token("admin_token"),
        admin_header_timeout=table.duration("admin_header_timeout", d.admin_header_timeout),
        admin_body_timeout=table.duration("admin_body_timeout", d.admin_body_timeout),
        admin_max_connections=table.integer("admin_max_connections", d.admin_max_connections),
        concurrency=table.integer("concurrency", d.concurrency),
        per_destination=table.integer("per_destination", d.per_destination),
        grace=table.duration("grace", d.grace),
        min_free=table.size("min_free", d.min_free),
        proxy=proxy,
        synchronous=cast(Any, table.choice("synchronous", SYNCHRONOUS, d.synchronous)),
        node=_node(table) or d.node,
        lease=_lease(table, d.lease),
        workers=table.integer("workers", d.workers, minimum=1, maximum=MAX_WORKERS),
    )


def _spool(table: Table) -> Path | str | None:
    """A ``postgresql://`` URL as written (secret references expanded), else a file path."""
    value = table.string("spool")
    if value is not None and is_database_url(value):
        return value
    return table.path_value("spool")


def _node(table: Table) -> str | None:
    value = table.string("node")
    if value is not None and not value.strip():
        table.error(
            "must not be empty: name this node, or remove node to use the host name", "node"
        )
        return None
    return value


def _lease(table: Table, default: float) -> float:
    lease = table.duration("lease", default)
    if lease < MIN_LEASE:
        table.error(
            f"must be at least {MIN_LEASE:g}s: a node renews its claims every third of it",
            "lease",
        )
        return default
    return lease


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


def _allowed_destinations(table: Table, key: str) -> tuple[AllowedDestination, ...]:
    allowed: list[AllowedDestination] = []
    for index, text in enumerate(table.strings(key) or []):
        try:
            allowed.append(parse_allowed_destination(text))
        except ValueError as exc:
            table.error(str(exc), key, index)
    return tuple(allowed)


ALLOWED_FORMS = (
    '"10.1.2.0/24", "10.1.2.3", "10.1.2.3:8443", "10.1.2.0/24:443", "[fd00::7]:8443" '
    'or "receiver.internal:8443"'
)


def parse_allowed_destination(text: str) -> AllowedDestination:
    """One `allow_destinations` entry: a network or address, optionally ``:port``, or
    ``host:port``. Raises ValueError with the message `check` shows.

    An IPv6 address with a port takes brackets (``[fd00::7]:8443``): unbracketed, ``::1:80``
    is itself an address. A host name without a port is refused, since naming a host trusts
    whatever it resolves to; the port keeps that to one receiver.
    """
    entry = text.strip()
    if entry.startswith("["):
        inner, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f'expected "[IPv6 address]:port" like "[fd00::7]:8443", got {text!r}')
        network = _network(inner)
        if network.version != 6:
            raise ValueError(f"brackets are for IPv6 addresses only, got {text!r}")
        return AllowedDestination(network, port=_port(rest[1:], text) if rest else None)
    try:
        return AllowedDestination(ipaddress.ip_network(entry, strict=True))
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise ValueError(_network_error(entry, exc)) from None
    where, colon, port_text = entry.rpartition(":")
    if not colon:
        if _is_host_name(entry):
            raise ValueError(
                f"a host name needs a port ({entry!r} would trust every port of whatever it "
                f'resolves to): write "{entry}:443" (the receiver\'s port), or use an address'
            )
        raise ValueError(f"not a network, an address or host:port like {ALLOWED_FORMS}: {text!r}")
    port = _port(port_text, text)
    if "/" in where or _address_or_none(where) is not None:
        return AllowedDestination(_network(where), port=port)
    if ":" in where:
        raise ValueError(
            f'an IPv6 address with a port takes brackets, like "[fd00::7]:8443": {text!r}'
        )
    if not _is_host_name(where):
        raise ValueError(f"not a network, an address or host:port like {ALLOWED_FORMS}: {text!r}")
    return AllowedDestination(host=normal_host(where), port=port)


def _network(text: str) -> Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(_network_error(text, exc)) from None


def _network_error(text: str, exc: ValueError) -> str:
    hint = ""
    try:
        hint = f' (did you mean "{ipaddress.ip_network(text, strict=False)}"?)'
    except ValueError:
        pass
    return f'not a network like "10.1.2.0/24" or an address: {exc}{hint}'


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"not a port number (1-65535): {text!r} in {entry!r}")
    return int(text)


def _address_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_host_name(text: str) -> bool:
    """A DNS name as a URL carries it (letters, digits, ``-``, ``_``, dots; not all digits)."""
    labels = text.rstrip(".").split(".")
    return (
        0 < len(text) <= 253
        and all(0 < len(label) <= 63 and HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


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


def build_alerts(table: Table | None) -> AlertsConfig:
    """The `[alerts]` table (see docs/operating.md, "Alerts"), or the defaults; whether its
    customer is declared is checked by the loader, which knows the customers."""
    if table is None:
        return AlertsConfig()
    table.check_keys(ALERTS_KEYS)
    d = AlertsConfig()
    delays = {}
    for key, example in ALERT_DELAY_EXAMPLES.items():
        value = table.duration(key, getattr(d, key))
        if value < MIN_ALERT_DELAY:
            table.error(
                f"must be at least {MIN_ALERT_DELAY:g}s (alerts are looked for once a second), "
                f'e.g. "{example}"',
                key,
            )
            value = getattr(d, key)
        delays[key] = value
    return AlertsConfig(
        customer=table.string("customer", d.customer) or d.customer,
        location=table.location,
        **delays,
    )
