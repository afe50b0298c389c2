"""A generation: one loaded configuration with its templates and router, and how it is built.

Shared by the daemon (start and every reload) and the CLI (check, render, test), so that what
`postbackd check` accepts is exactly what the daemon runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from postbackd.config import (
    Config,
    ConfigCache,
    ConfigError,
    Diagnostic,
    PluginClasses,
    load_config,
)
from postbackd.events import now_iso
from postbackd.plugin import PluginContext
from postbackd.plugins import PluginError, PluginHost, instantiate, load_plugins
from postbackd.router import Router
from postbackd.templates import CompiledCache, RenderError, TemplateEngine


@dataclass(frozen=True)
class Generation:
    """One accepted configuration and what was built from it; swapped whole on reload."""

    number: int
    config: Config
    router: Router
    loaded_at: str
    fingerprint: str = ""  # the loaded files' hash: a fleet's nodes compare theirs
    # the same, node-local tables and resolved secret values included: a delivery worker makes
    # an attempt for its main process only when both have loaded exactly this
    identity: str = ""


@dataclass
class ConfigHolder:
    """The configuration in force; plugins read it through `PluginContext.config`."""

    value: Config | None = None

    def get(self) -> Config:
        if self.value is None:
            raise RuntimeError("no configuration loaded yet")
        return self.value


@dataclass
class Plugins:
    """The plugin host and one instance of each registered delivery class.

    It also keeps what one load leaves for the next: `config_cache` (files that did not change
    are not parsed again) and `template_cache` (templates whose source did not change are not
    compiled again).
    """

    host: PluginHost
    holder: ConfigHolder
    deliveries: dict[str, Any] = field(default_factory=dict)
    config_cache: ConfigCache = field(default_factory=ConfigCache)
    template_cache: CompiledCache = field(default_factory=CompiledCache)
    _built_with: dict[str, dict[str, Any]] = field(default_factory=dict)

    def context(self, admin_routes: tuple[Any, ...] = ()) -> PluginContext:
        return PluginContext(config=self.holder.get, admin_routes=admin_routes)

    def build_deliveries(self, tables: Mapping[str, Mapping[str, Any]]) -> list[Any]:
        """(Re)build delivery instances whose ``[deliveries.NAME]`` table changed.

        Returns the replaced instances, for the caller to close once nothing uses them. All
        or nothing: if one plugin refuses its settings (PluginError), none is replaced.
        """
        context = self.context()
        built: dict[str, tuple[Any, dict[str, Any]]] = {}
        for name, registered in self.host.deliveries.items():
            table = dict(tables.get(name, {}))
            if name in self.deliveries and self._built_with.get(name) == table:
                continue
            built[name] = (instantiate(registered.value, table, context), table)
        replaced = [self.deliveries[name] for name in built if name in self.deliveries]
        for name, (instance, table) in built.items():
            self.deliveries[name] = instance
            self._built_with[name] = table
        return replaced

    def classes(self) -> PluginClasses:
        """The registered classes, whose ``read_settings`` the loader reads their tables with."""
        return PluginClasses(
            sources={name: r.value for name, r in self.host.sources.items()},
            deliveries={name: r.value for name, r in self.host.deliveries.items()},
        )

    def validators(self) -> dict[str, Callable[[Mapping[str, Any]], list[str]]]:
        return {name: plugin.validate_options for name, plugin in self.deliveries.items()}

    def resolve_secret(self, ref: str) -> str | None:
        result = self.host.hook.postbackd_resolve_secret(ref=ref)
        return None if result is None else str(result)


def open_plugins(
    conf_dir: Path, *, use_entry_points: bool = True, disabled: Iterable[str] | None = None
) -> Plugins:
    """Load the plugins the configuration asks for (``[daemon] plugin_dirs``).

    The directory is read once leniently first — secrets are not expanded, since the plugins
    that resolve custom schemes are not loaded yet — to find the plugin directories and the
    ``[deliveries.NAME]`` tables. Raises PluginError; configuration errors are left to the
    full load that follows (`load_generation`), which reports them all.
    """
    cache = ConfigCache()
    try:
        first = load_config(conf_dir, expand_secrets=False, cache=cache)
    except ConfigError:
        # The full load that follows reports every error; meanwhile validate with the
        # built-in and installed plugins, so delivery names and options are checked too.
        first = None
    host = load_plugins(
        first.daemon.plugin_dirs if first else (),
        use_entry_points=use_entry_points,
        disabled=disabled,
    )
    plugins = Plugins(host, ConfigHolder(), config_cache=cache)
    tables = first.deliveries if first else {}
    try:
        plugins.build_deliveries(tables)
    except PluginError:
        # A delivery that reads its table with read_settings has it checked by the full load,
        # each problem at its key's line: meanwhile it is built with its defaults. One that
        # does not refuses here, as it always did.
        read = {name for name, r in host.deliveries.items() if hasattr(r.value, "read_settings")}
        plugins.build_deliveries({name: t for name, t in tables.items() if name not in read})
    return plugins


def build_engine(
    config: Config, host: PluginHost, cache: CompiledCache | None = None
) -> TemplateEngine:
    globals_, filters = host.template_functions()
    return TemplateEngine(
        config.templates, config.lookups, globals_=globals_, filters=filters, cache=cache
    )


def template_errors(
    config: Config, engine: TemplateEngine, names: Iterable[str] | None = None
) -> list[Diagnostic]:
    """Every configured template (or those `names`) compiled: each syntax error at its
    template's file and line.

    A reload must refuse what `check` refuses: a template that does not compile would
    otherwise be swapped in and fail every delivery that uses it.
    """
    found: list[Diagnostic] = []
    for name in sorted(config.templates if names is None else names):
        template = config.templates[name]
        try:
            engine.compiled(name)
        except RenderError as exc:
            where = template.body_location or template.location
            found.append(Diagnostic(where.path, where.line, str(exc)))
    return found


def load_generation(conf_dir: Path, plugins: Plugins, number: int) -> Generation:
    """Load and fully validate `conf_dir`, trigger options and templates included; raises
    ConfigError."""
    config = load_config(
        conf_dir,
        deliveries=plugins.validators(),
        classes=plugins.classes(),
        resolve_secret=plugins.resolve_secret,
        cache=plugins.config_cache,
    )
    engine = build_engine(config, plugins.host, plugins.template_cache)
    broken = template_errors(config, engine)
    if broken:
        raise ConfigError([replace(d, message=config.redactor.text(d.message)) for d in broken])
    router = Router(config, engine, plugins.deliveries)
    tables = plugins.config_cache.tables()
    fingerprint = config_fingerprint(tables, config)
    identity = process_identity(fingerprint, tables, config)
    return Generation(number, config, router, now_iso(), fingerprint, identity)


NODE_LOCAL_TABLES = frozenset({"daemon", "sources", "ui"})
"""Tables that may differ between a fleet's nodes by design: node name, spool, listeners, UI."""


def config_fingerprint(tables: Iterable[tuple[str, Any]], config: Config) -> str:
    """A short stable hash of what a fleet's nodes must agree on: every table as written (secret
    references, not their values) except the node-local ones, and every template's source
    (a ``body_file`` included). The same configuration gives the same hash on every node,
    whatever its directory's path, its file names or its order of files."""
    chunks = sorted(
        json.dumps({key: item}, sort_keys=True, default=str)
        for key, value in tables
        if key not in NODE_LOCAL_TABLES
        for item in (value if isinstance(value, list) else [value])  # [[trigger]] one by one
    )
    chunks += sorted(
        f"template {name}\0{template.subject or ''}\0{template.body}"
        for name, template in config.templates.items()
    )
    return _digest(chunks)


def process_identity(fingerprint: str, tables: Iterable[tuple[str, Any]], config: Config) -> str:
    """The fingerprint with what it leaves out added: the node-local tables and the resolved
    secret values (`Generation.identity`). A rotated secret file changes no table, but it does
    change what a delivery worker would sign with. Cheap beside the fingerprint: those tables
    are few, whatever the number of customers."""
    local = sorted(
        json.dumps({key: value}, sort_keys=True, default=str)
        for key, value in tables
        if key in NODE_LOCAL_TABLES
    )
    return _digest([fingerprint, *local, *sorted(config.redactor.values)])


def _digest(chunks: list[str]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(len(chunk).to_bytes(8, "big"))
        digest.update(chunk.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


__all__ = [
    "ConfigError",
    "ConfigHolder",
    "Generation",
    "Plugins",
    "build_engine",
    "load_generation",
    "open_plugins",
    "template_errors",
]
