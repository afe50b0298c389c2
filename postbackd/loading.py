"""From a configuration directory to a ready-to-use generation: config, templates, router.

Shared by the daemon (start and every reload) and the CLI (check, render, test), so that what
`postbackd check` accepts is exactly what the daemon runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postbackd.config import ConfigError, load_config
from postbackd.config_model import Config
from postbackd.events import now_iso
from postbackd.intake import Generation
from postbackd.plugin import PluginContext
from postbackd.plugins import PluginHost, instantiate
from postbackd.router import Router
from postbackd.templates import TemplateEngine


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
    """The plugin host and one instance of each registered delivery class."""

    host: PluginHost
    holder: ConfigHolder
    deliveries: dict[str, Any] = field(default_factory=dict)

    def context(self, admin_routes: tuple[Any, ...] = ()) -> PluginContext:
        return PluginContext(config=self.holder.get, admin_routes=admin_routes)

    def instantiate_deliveries(self, settings: Mapping[str, Mapping[str, Any]]) -> None:
        context = self.context()
        for name, registered in self.host.deliveries.items():
            if name not in self.deliveries:
                self.deliveries[name] = instantiate(registered.value, settings.get(name, {}),
                                                    context)

    def validators(self) -> dict[str, Callable[[Mapping[str, Any]], list[str]]]:
        return {name: plugin.validate_options for name, plugin in self.deliveries.items()}

    def resolve_secret(self, ref: str) -> str | None:
        result = self.host.hook.postbackd_resolve_secret(ref=ref)
        return None if result is None else str(result)


def build_engine(config: Config, host: PluginHost) -> TemplateEngine:
    globals_, filters = host.template_functions()
    return TemplateEngine(config.templates, config.lookups, globals_=globals_, filters=filters)


def load_generation(conf_dir: Path, plugins: Plugins, number: int) -> Generation:
    """Load and fully validate `conf_dir`; raises ConfigError listing every problem.

    Delivery plugins are built once, with the ``[deliveries.NAME]`` tables of the first
    configuration, so the very first load reads the directory twice: once to find those
    tables, once to check every trigger's options with the plugins' own validators.
    """
    if not plugins.deliveries:
        first = load_config(conf_dir, resolve_secret=plugins.resolve_secret)
        plugins.instantiate_deliveries(first.deliveries)
    config = load_config(conf_dir, deliveries=plugins.validators(),
                         resolve_secret=plugins.resolve_secret)
    return Generation(number, config, Router(config, build_engine(config, plugins.host)),
                      now_iso())


__all__ = ["ConfigError", "ConfigHolder", "Plugins", "build_engine", "load_generation"]
