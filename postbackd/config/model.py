"""The typed, validated configuration: frozen values built by `postbackd.config.load.load_config`.

Nothing here reads files; these are the values that cross module lines. Every item that came
from a file carries its `Location`, so later checks (plugin options, template warnings) can
still name file and line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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


@dataclass(frozen=True)
class DaemonConfig:
    spool: Path
    plugin_dirs: tuple[Path, ...] = ()
    allow_private_destinations: bool = False
    allow_destinations: tuple[Network, ...] = ()
    breaker_failures: int = 10
    breaker_cooldown: float = 30.0
    retention: float = 30 * 86400.0
    admin_listen: str = "127.0.0.1:8787"
    admin_token: str | None = None
    concurrency: int = 256
    per_destination: int = 8
    grace: float = 10.0
    min_free: int = 64 * 1024 * 1024
    proxy: str | None = None
    synchronous: Literal["FULL", "NORMAL"] = "FULL"


@dataclass(frozen=True)
class SourceConfig:
    """A `[sources.NAME]` table: the plugin registered as NAME is built from `settings`."""

    name: str
    settings: Mapping[str, Any]
    location: Location


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
    # every secret of the directory, for messages and log lines; `shared_redactor` holds only
    # those of the settings tables ([daemon], [smtp], sources, deliveries), which any attempt
    # may show, so an attempt checks its trigger's few secrets and these, not all of them
    redactor: Redactor = field(default=NO_SECRETS, compare=False, repr=False)
    shared_redactor: Redactor = field(default=NO_SECRETS, compare=False, repr=False)
