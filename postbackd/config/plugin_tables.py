"""``[sources.NAME]`` and ``[deliveries.NAME]``: each table read by its plugin, at its keys' lines.

The tables belong to their plugins and are kept as mappings — what the plugin is built from —
but two things are done here because they are the same for every plugin: secret references
are expanded, and a path setting (a string under a key named ``directory`` or ``path``, or
ending in ``_dir``, ``_directory``, ``_path`` or ``_file``) is resolved against the directory
of its file.

A plugin class may define ``read_settings(reader) -> settings``: the loader calls it with the
`Table`, so ``check``, start and reload report each problem at its key's file:line, read by the
same code that reads the settings when the plugin is built (`postbackd.config.reader`). A
source that serves the admin API on its own listener says so with ``admin_endpoint(settings)
-> AdminEndpoint | None``, asked only of settings read without error; the core then judges
that listener instead of ``[daemon] admin_listen``. The core never names a plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from postbackd.config.model import AdminEndpoint, SourceConfig
from postbackd.config.report import Reporter
from postbackd.config.table import Table

PATH_KEYS = frozenset({"directory", "path"})
PATH_SUFFIXES = ("_dir", "_directory", "_path", "_file")


@dataclass(frozen=True)
class PluginClasses:
    """The registered source and delivery classes by name: whose ``read_settings`` and
    ``admin_endpoint`` the loader asks about each table. A name not here is read by no one."""

    sources: Mapping[str, type] = field(default_factory=dict)
    deliveries: Mapping[str, type] = field(default_factory=dict)


def is_path_key(key: str) -> bool:
    return key in PATH_KEYS or key.endswith(PATH_SUFFIXES)


def plugin_settings(table: Table) -> dict[str, Any]:
    """A plugin's table with secrets expanded and path settings made absolute."""
    settings = dict(table.data)
    for key, value in settings.items():
        if is_path_key(key) and isinstance(value, str) and value.strip():
            settings[key] = str((table.file.directory / value).resolve())
    return settings


def read_settings(cls: type | None, table: Table) -> Any:
    """``cls.read_settings(table)``, each problem reported at its key; None when `cls` has no
    ``read_settings`` or the settings are wrong (then nothing more is asked of them)."""
    read = getattr(cls, "read_settings", None)
    if read is None:
        return None
    found = Reporter()
    try:
        value = read(Table(table.file, table.path, table.label, found))
    except Exception as exc:  # a plugin's bug: say whose, and validate the rest
        table.error(f"{_qualname(read)} raised {type(exc).__name__}: {exc}")
        return None
    table.report.extend(found.diagnostics)
    return None if found.failed else value


def build_source(table: Table, name: str, cls: type | None) -> SourceConfig:
    settings = read_settings(cls, table)
    admin = None if settings is None else _admin_endpoint(cls, settings, table)
    return SourceConfig(name, plugin_settings(table), table.location, admin)


def _admin_endpoint(cls: type | None, settings: Any, table: Table) -> AdminEndpoint | None:
    declare = getattr(cls, "admin_endpoint", None)
    if declare is None:
        return None
    try:
        endpoint = declare(settings)
        if endpoint is not None and not isinstance(endpoint, AdminEndpoint):
            raise TypeError(f"expected an AdminEndpoint or None, got {type(endpoint).__name__}")
    except Exception as exc:
        table.error(f"{_qualname(declare)} raised {type(exc).__name__}: {exc}")
        return None
    return endpoint


def check_admin_endpoints(
    tables: Mapping[str, Table], sources: Mapping[str, SourceConfig], admin_token: str | None
) -> None:
    """A source's admin listener off loopback needs a token, its own or ``[daemon]
    admin_token`` (the admin API and the UI are served there)."""
    if admin_token:
        return
    for name, source in sources.items():
        if source.admin is None or source.admin.is_loopback:
            continue
        tables[name].error(
            f"serves the admin API on {source.admin.host}, which is not loopback, without a "
            "token: anyone who can reach it could use the admin API and the UI. Set "
            '[daemon] admin_token = "${env:POSTBACKD_ADMIN_TOKEN}" (or listen on 127.0.0.1 '
            "behind a reverse proxy)"
        )


def _qualname(method: Any) -> str:
    """``postbackd.sources.http.HttpSource.read_settings``: whose bug it is."""
    return f"{method.__module__}.{method.__qualname__}"
