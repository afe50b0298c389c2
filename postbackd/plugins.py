"""The plugin manager: built-ins, entry points (group ``postbackd``) and ``plugin_dirs`` files.

Built-in sources and deliveries are registered from `DEFAULT_PLUGINS` through the same hooks a
third party uses; the core never imports them by name anywhere else.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from postbackd import hookspecs
from postbackd.plugin import PROJECT, PluginContext

DEFAULT_PLUGINS: tuple[str, ...] = (
    "postbackd.deliveries.webhook",
    "postbackd.deliveries.email",
    "postbackd.sources.http",
    "postbackd.sources.filedrop",
    "postbackd.sources.amqp",
)
DISABLE_ENV = "POSTBACKD_DISABLE_PLUGINS"


class PluginError(Exception):
    """A plugin could not be loaded or registered; the message names the plugin and file."""


@dataclass(frozen=True)
class Registered:
    """One registered class or function, and the plugin that registered it."""

    name: str
    value: Any
    plugin: str


@dataclass
class PluginHost:
    """The loaded plugins and what they registered, by kind."""

    manager: pluggy.PluginManager
    sources: dict[str, Registered] = field(default_factory=dict)
    deliveries: dict[str, Registered] = field(default_factory=dict)
    template_globals: dict[str, Registered] = field(default_factory=dict)
    template_filters: dict[str, Registered] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # plugin name → built-in/entry point/file

    @property
    def hook(self) -> Any:
        return self.manager.hook

    def template_functions(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            {name: r.value for name, r in self.template_globals.items()},
            {name: r.value for name, r in self.template_filters.items()},
        )


def load_plugins(
    plugin_dirs: Iterable[Path] = (),
    *,
    use_entry_points: bool = True,
    disabled: Iterable[str] | None = None,
    extra: Iterable[ModuleType | object] = (),
) -> PluginHost:
    """Load built-ins, entry points and plugin_dirs files, then collect their registrations.

    `disabled` names plugins to skip (default: ``$POSTBACKD_DISABLE_PLUGINS``, comma-separated);
    `extra` registers objects directly (tests). Raises PluginError naming the plugin.
    """
    skip = set(disabled if disabled is not None else _disabled_from_env())
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    host = PluginHost(manager)
    for module_name in DEFAULT_PLUGINS:
        if module_name not in skip:
            _register(host, _import(module_name, module_name), module_name, "built-in")
    if use_entry_points:
        for entry in entry_points(group=PROJECT):
            if entry.name in skip:
                continue
            try:
                module = entry.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {entry.name!r} (entry point {entry.value}) failed to import: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            _register(host, module, entry.name, f"entry point {entry.value}")
    for directory in plugin_dirs:
        for path in _plugin_files(directory):
            name = path.stem if path.suffix == ".py" else path.name
            if name not in skip:
                _register(host, _import_path(name, path), name, f"file {path}")
    for index, obj in enumerate(extra):
        name = getattr(obj, "__name__", f"extra-{index}")
        _register(host, obj, name, "registered in-process")
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {_plugin_label(host, exc.plugin)} has a hook that postbackd does not "
            f"define: {exc}. Check the spelling against `postbackd.hookspecs`."
        ) from exc
    _collect(host)
    return host


def instantiate(cls: type, settings: Mapping[str, Any], context: PluginContext) -> Any:
    """Build a registered class: ``cls(settings)``, or ``cls(settings, context=...)`` if it asks."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    try:
        if "context" in parameters:
            return cls(dict(settings), context=context)
        return cls(dict(settings))
    except (ValueError, TypeError) as exc:
        raise PluginError(f"{cls.__module__}.{cls.__qualname__}: invalid settings: {exc}") from exc


def _disabled_from_env() -> list[str]:
    return [name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()]


def _plugin_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise PluginError(f"plugin directory {directory} does not exist (see [daemon] plugin_dirs)")
    found = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith((".", "_")):
            continue
        if (path.suffix == ".py" and path.is_file()) or (path / "__init__.py").is_file():
            found.append(path)
    return found


def _import(module_name: str, label: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(
            f"plugin {label!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc


def _import_path(name: str, path: Path) -> ModuleType:
    """Import a plugin file or package from a plugin directory under a private module name."""
    target = path / "__init__.py" if path.is_dir() else path
    module_name = f"postbackd_plugin_{name}"
    spec = importlib.util.spec_from_file_location(
        module_name, target, submodule_search_locations=[str(path)] if path.is_dir() else None
    )
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {name!r} ({path}) cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PluginError(
            f"plugin {name!r} ({path}) failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _register(host: PluginHost, obj: object, name: str, origin: str) -> None:
    try:
        host.manager.register(obj, name=name)
    except ValueError as exc:
        raise PluginError(f"plugin {name!r} ({origin}) is registered twice: {exc}") from exc
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} ({origin}) is invalid: {exc}") from exc
    host.origins[name] = origin


def _plugin_label(host: PluginHost, plugin: object) -> str:
    name = host.manager.get_name(plugin) or repr(plugin)
    origin = host.origins.get(name, "")
    return f"{name!r} ({origin})" if origin else repr(name)


def _collect(host: PluginHost) -> None:
    """Call every registration hook, one plugin at a time, so duplicates name both plugins."""
    kinds: tuple[tuple[str, dict[str, Registered], str], ...] = (
        ("postbackd_register_sources", host.sources, "source"),
        ("postbackd_register_deliveries", host.deliveries, "delivery"),
        ("postbackd_register_template_globals", host.template_globals, "template global"),
        ("postbackd_register_template_filters", host.template_filters, "template filter"),
    )
    for hook_name, table, kind in kinds:
        caller = getattr(host.manager.hook, hook_name)
        for impl in caller.get_hookimpls():
            register = _registrar(host, table, kind, impl.plugin_name)
            try:
                impl.function(register)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {_origin(host, impl.plugin_name)} raised in {hook_name}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc


def _registrar(
    host: PluginHost, table: dict[str, Registered], kind: str, plugin_name: str
) -> Callable[[str, Any], None]:
    """The `register` callable one plugin's registration hook receives."""

    def register(name: str, value: Any) -> None:
        previous = table.get(name)
        if previous is not None:
            raise PluginError(
                f"{kind} name {name!r} is registered by two plugins: "
                f"{_origin(host, previous.plugin)} and {_origin(host, plugin_name)}; "
                f"disable one with {DISABLE_ENV}"
            )
        table[name] = Registered(name, value, plugin_name)

    return register


def _origin(host: PluginHost, plugin_name: str) -> str:
    origin = host.origins.get(plugin_name)
    return f"{plugin_name!r} ({origin})" if origin else repr(plugin_name)
