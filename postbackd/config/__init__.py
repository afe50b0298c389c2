"""conf.d → a typed, validated `Config` (DESIGN §3): the names other packages may import.

Inside: `model` (the frozen dataclasses), `load` (the loader that reports every problem with
file:line), `files` and `parse` (which files count, one file to a `ConfFile`), `cache` (files
that did not change are not parsed again), `reader` (the typed settings reader, also offered to
plugins) and `table` (a table of a file, read with it), `sections`, `plugin_tables` and `items`
(the tables of DESIGN §3), `secrets` (``${scheme:...}`` references), `tomllines` (the
line of a key), `report` (diagnostics) and `watch` (reload when a file is closed).
"""

from __future__ import annotations

from postbackd.config.cache import ConfigCache
from postbackd.config.files import readable_spool_setting
from postbackd.config.items import CUSTOMER_ID
from postbackd.config.load import (
    BUILTIN_TEMPLATE_NAMES,
    LoadResult,
    PluginClasses,
    ValidateOptions,
    config_files,
    config_paths,
    default_spool,
    load_config,
    load_config_with_warnings,
)
from postbackd.config.model import (
    DEFAULT_RETRY_SCHEDULE,
    AdminEndpoint,
    AllowedDestination,
    Config,
    Customer,
    DaemonConfig,
    Location,
    Lookup,
    Network,
    SlaRule,
    SmtpConfig,
    SourceConfig,
    TemplateConfig,
    TemplateFormat,
    TlsMode,
    Trigger,
    UiConfig,
)
from postbackd.config.reader import SettingsReader, read_mapping
from postbackd.config.report import ConfigError, Diagnostic
from postbackd.config.watch import ConfigWatcher

__all__ = [
    "BUILTIN_TEMPLATE_NAMES",
    "CUSTOMER_ID",
    "DEFAULT_RETRY_SCHEDULE",
    "AdminEndpoint",
    "AllowedDestination",
    "Config",
    "ConfigCache",
    "ConfigError",
    "ConfigWatcher",
    "Customer",
    "DaemonConfig",
    "Diagnostic",
    "LoadResult",
    "Location",
    "Lookup",
    "Network",
    "PluginClasses",
    "SettingsReader",
    "SlaRule",
    "SmtpConfig",
    "SourceConfig",
    "TemplateConfig",
    "TemplateFormat",
    "TlsMode",
    "Trigger",
    "UiConfig",
    "ValidateOptions",
    "config_files",
    "config_paths",
    "default_spool",
    "load_config",
    "load_config_with_warnings",
    "read_mapping",
    "readable_spool_setting",
]
