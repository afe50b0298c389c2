"""The typed, validated configuration: frozen values built by `postbackd.config.load.load_config`.

Nothing here reads files; these are the values that cross module lines. Every item that came
from a file carries its `Location`, so later checks (plugin options, template warnings) can
still name file and line.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from postbackd.batching import DEFAULT_FILE_NAME, BatchWindow
from postbackd.redaction import NO_SECRETS, Redactor

TemplateFormat = Literal["json", "xml", "text", "html", "csv"]
TriggerStatus = Literal["active", "inactive"]
TlsMode = Literal["starttls", "implicit", "none"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)


@dataclass(frozen=True)
class Location:
    """Where a setting was written: a file and a 1-based line (0 when unknown)."""

    path: Path
    line: int = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else str(self.path)


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8787"`` / ``"[::1]:8787"`` / ``"localhost:80"`` → (host, port)."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'expected "host:port" like "127.0.0.1:8787", got {text!r}')
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host.casefold() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AdminEndpoint:
    """A listener on which a source serves the admin API itself (`PluginContext.admin_routes`),
    as its ``admin_endpoint(settings)`` declares it.

    With one, ``[daemon] admin_listen`` is not opened, `token` is the admin token unless
    ``[daemon] admin_token`` is set, and `postbackd reload`/`send` find the daemon there.
    `listen` is ``"host:port"``; a malformed one raises ValueError.
    """

    listen: str
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parse_listen(self.listen)

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)


@dataclass(frozen=True)
class AllowedDestination:
    """One `[daemon] allow_destinations` entry: a network (an address is a /32 or /128) or a
    host name, and the one port it is allowed on (None: every port; a host name always has one).

    A port narrows the exception to the receiver that needs it: ``"10.1.2.3:8443"`` lets
    postbacks reach that receiver without also opening the admin ports of the same machine.
    A host name is trusted for whatever it resolves to, which is why it needs a port.
    """

    network: Network | None = None
    host: str | None = None  # lower case, no trailing dot
    port: int | None = None

    def matches(
        self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None
    ) -> bool:
        """Whether a connection to `address` (which `host` resolved to) on `port` is allowed.

        A port-limited entry never matches when the port is unknown (None).
        """
        if self.port is not None and self.port != port:
            return False
        if self.host is not None:
            return normal_host(host) == self.host
        return self.network is not None and address in self.network

    def __str__(self) -> str:
        """As it would be written in `allow_destinations` (IPv6 with a port in brackets)."""
        if self.host is not None:
            return f"{self.host}:{self.port}"
        assert self.network is not None
        where = str(self.network)
        if self.network.num_addresses == 1:
            where = str(self.network.network_address)
        if self.port is None:
            return str(self.network)
        return f"[{where}]:{self.port}" if self.network.version == 6 else f"{where}:{self.port}"


def normal_host(host: str) -> str:
    """A host name as entries and URLs are compared: lower case, no trailing dot or brackets."""
    return host.strip("[]").lower().rstrip(".")


@dataclass(frozen=True)
class DaemonConfig:
    spool: Path | str  # a SQLite file, or a postgresql:// URL a fleet of nodes shares
    plugin_dirs: tuple[Path, ...] = ()
    allow_private_destinations: bool = False
    allow_destinations: tuple[AllowedDestination, ...] = ()
    breaker_failures: int = 10
    breaker_cooldown: float = 30.0
    retention: float = 30 * 86400.0
    admin_listen: str = "127.0.0.1:8787"
    admin_token: str | None = None
    admin_header_timeout: float = 10.0  # slow clients of admin_listen (postbackd.web.guard)
    admin_body_timeout: float = 30.0
    admin_max_connections: int = 256
    concurrency: int = 256
    per_destination: int = 8
    grace: float = 10.0
    min_free: int = 64 * 1024 * 1024
    proxy: str | None = None
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # a fleet's node: its name in claims and the request log, and how long its claims last
    # unless renewed (a dead node's deliveries go out from another one after that)
    node: str = field(default_factory=socket.gethostname)
    lease: float = 30.0
    # processes in all: this one and workers - 1 delivery workers beside it (with PostgreSQL
    # nodes of the fleet; with SQLite, whose file has one owner, they make attempts for this one)
    workers: int = 1


@dataclass(frozen=True)
class SourceConfig:
    """A `[sources.NAME]` table: the plugin registered as NAME is built from `settings`;
    `admin` is the listener it serves the admin API on, if it declares one."""

    name: str
    settings: Mapping[str, Any]
    location: Location
    admin: AdminEndpoint | None = None


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    from_address: str = "postbackd@localhost"
    from_name: str | None = None
    tls: TlsMode = "none"
    timeout: float = 30.0
    location: Location | None = None


@dataclass(frozen=True)
class UiConfig:
    enabled: bool = True


@dataclass(frozen=True)
class AlertsConfig:
    """The `[alerts]` table: when the daemon's own events (`postbackd.*`) are raised.

    `customer` is the customer those events belong to: triggers of that customer route them,
    and no other customer's trigger ever sees them.
    """

    customer: str = "postbackd"
    destination_failing_after: float = 15 * 60.0  # breaker open this long: one alert
    source_down_after: float = 60.0  # a source not ready this long: one alert
    delivery_dead_window: float = 60.0  # dead deliveries of a destination, gathered this long
    location: Location | None = None


@dataclass(frozen=True)
class Customer:
    id: str
    name: str
    location: Location


@dataclass(frozen=True)
class TemplateConfig:
    """A template: its Jinja2 source for the body and, for email, the subject."""

    name: str
    format: TemplateFormat
    body: str
    location: Location
    subject: str | None = None
    body_location: Location | None = None  # the body_file, when the body came from one
    # a shipment file's first and last lines, around the bodies of its deliveries (the rows)
    header: str | None = None
    footer: str | None = None


@dataclass(frozen=True)
class Trigger:
    name: str
    customer: str
    events: tuple[str, ...]
    template: str
    delivery: str
    location: Location
    status: TriggerStatus = "active"
    retry: bool = True
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    ordered: bool = False
    supersede: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    # batch = "1h" | "daily 18:00": deliveries go out together, as one file per window
    batch: BatchWindow | None = None
    batch_file: str = DEFAULT_FILE_NAME
    # the secrets of this trigger's table (its options), masked in its request log by value
    redactor: Redactor = field(default=NO_SECRETS, compare=False, repr=False)

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def delays(self) -> tuple[float, ...]:
        """The waits between attempts: none when retry is off (one attempt only)."""
        return self.retry_schedule if self.retry else ()


@dataclass(frozen=True)
class SlaRule:
    """An ``[[sla]]`` rule: once an order's first `after` event arrives, one of `expect` must
    follow within `within` seconds, or an `emit` event is routed for the order (a delay
    alert). `customer` None: every customer's orders."""

    name: str
    after: str
    expect: tuple[str, ...]
    within: float
    emit: str
    location: Location
    customer: str | None = None

    def applies_to(self, customer: str) -> bool:
        return self.customer is None or self.customer == customer


@dataclass(frozen=True)
class Lookup:
    name: str
    key: str
    values: Mapping[str, str]
    location: Location
    customer: str | None = None


@dataclass(frozen=True)
class Config:
    """The whole configuration directory, validated."""

    conf_dir: Path
    daemon: DaemonConfig
    sources: Mapping[str, SourceConfig]
    deliveries: Mapping[str, Mapping[str, Any]]
    smtp: SmtpConfig
    ui: UiConfig
    customers: Mapping[str, Customer]
    templates: Mapping[str, TemplateConfig]
    triggers: Mapping[str, Trigger]
    lookups: Mapping[str, Lookup]
    alerts: AlertsConfig = AlertsConfig()
    sla: Mapping[str, SlaRule] = field(default_factory=dict)
    # every secret of the directory, for messages and log lines; `shared_redactor` holds only
    # those of the settings tables ([daemon], [smtp], sources, deliveries), which any attempt
    # may show, so an attempt checks its trigger's few secrets and these, not all of them
    redactor: Redactor = field(default=NO_SECRETS, compare=False, repr=False)
    shared_redactor: Redactor = field(default=NO_SECRETS, compare=False, repr=False)

    @property
    def admin_endpoint(self) -> AdminEndpoint | None:
        """The listener a source serves the admin API on (the first by name, if several do);
        None when none does, and ``[daemon] admin_listen`` serves it."""
        return first_admin_endpoint(self.sources)


def first_admin_endpoint(sources: Mapping[str, SourceConfig]) -> AdminEndpoint | None:
    """The admin listener of the first source (by name) that declares one."""
    return next((s.admin for _, s in sorted(sources.items()) if s.admin), None)


DATABASE_SCHEMES = ("postgresql://", "postgres://")
"""URL schemes of ``[daemon] spool`` that name a database server (the PostgreSQL spool)."""


def is_database_url(target: Path | str) -> bool:
    """Whether ``[daemon] spool`` names a database server rather than a file."""
    return isinstance(target, str) and target.startswith(DATABASE_SCHEMES)
