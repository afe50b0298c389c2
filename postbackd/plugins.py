"""The plugin manager: built-ins, entry points (group ``postbackd``) and ``plugin_dirs`` files.

Built-in sources and deliveries are registered from `DEFAULT_PLUGINS` through the same hooks a
third party uses; the core never imports them by name anywhere else. Loading fails fast, and
every failure is a `PluginError` naming the plugin and where it came from: an import that
raises (with the file:line that raised), a plugin written for another API version, a hook
that is misspelled, ``async def``, or not marked ``@hookimpl``, a registration hook that
raises, and a source or delivery name registered by two plugins (naming both).
"""

from __future__ import annotations

import asyncio
import difflib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from postbackd import __version__, hookspecs
from postbackd.logs import get_logger
from postbackd.plugin import API_VERSION, PROJECT, PluginContext

log = get_logger("postbackd.plugins")

DEFAULT_PLUGINS: tuple[str, ...] = (
    "postbackd.deliveries.webhook",
    "postbackd.deliveries.email",
    "postbackd.deliveries.directory",
    "postbackd.deliveries.sftp",
    "postbackd.sources.http",
    "postbackd.sources.filedrop",
    "postbackd.sources.amqp",
)
DISABLE_ENV = "POSTBACKD_DISABLE_PLUGINS"
API_ATTRIBUTE = "POSTBACKD_API_VERSION"


class PluginError(Exception):
    """A plugin could not be loaded or registered; the message names the plugin and file."""


class OriginKind(StrEnum):
    BUILTIN = "built-in"
    ENTRY_POINT = "entry point"
    FILE = "file"
    IN_PROCESS = "in-process"


@dataclass(frozen=True)
class Origin:
    """Where a plugin came from, and its version (package metadata, ``__version__`` or "-")."""

    kind: OriginKind
    where: str  # the module (built-in), the entry point's value, the file or package path
    version: str = "-"
    package: str | None = None  # the distribution that declared an entry point

    def __str__(self) -> str:
        if self.kind is OriginKind.ENTRY_POINT:
            return f"entry point {self.where} of {self.package or 'an unknown package'}"
        if self.kind is OriginKind.FILE:
            return f"file {self.where}"
        return str(self.kind)


@dataclass(frozen=True)
class Registered:
    """One registered class or function, and the plugin that registered it."""

    name: str
    value: Any
    plugin: str


KINDS: tuple[tuple[str, str, str], ...] = (
    ("postbackd_register_sources", "sources", "source"),
    ("postbackd_register_deliveries", "deliveries", "delivery"),
    ("postbackd_register_template_globals", "template_globals", "template global"),
    ("postbackd_register_template_filters", "template_filters", "template filter"),
)


@dataclass
class PluginHost:
    """The loaded plugins and what they registered, by kind."""

    manager: pluggy.PluginManager
    sources: dict[str, Registered] = field(default_factory=dict)
    deliveries: dict[str, Registered] = field(default_factory=dict)
    template_globals: dict[str, Registered] = field(default_factory=dict)
    template_filters: dict[str, Registered] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)  # plugin name → where it came from

    @property
    def hook(self) -> Any:
        return self.manager.hook

    def template_functions(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            {name: r.value for name, r in self.template_globals.items()},
            {name: r.value for name, r in self.template_filters.items()},
        )

    def hooks_of(self, plugin_name: str) -> list[str]:
        """The hooks a plugin implements."""
        plugin = self.manager.get_plugin(plugin_name)
        callers = self.manager.get_hookcallers(plugin) if plugin is not None else None
        return sorted(caller.name for caller in callers or ())

    def registered_by(self, plugin_name: str) -> dict[str, list[str]]:
        """What a plugin registered, by kind: ``{"deliveries": ["webhook"]}``."""
        found: dict[str, list[str]] = {}
        for _, attribute, _ in KINDS:
            table: dict[str, Registered] = getattr(self, attribute)
            names = sorted(name for name, r in table.items() if r.plugin == plugin_name)
            if names:
                found[attribute] = names
        return found

    def label(self, plugin_name: str) -> str:
        origin = self.origins.get(plugin_name)
        return f"{plugin_name!r} ({origin})" if origin else repr(plugin_name)


def load_plugins(
    plugin_dirs: Iterable[Path] = (),
    *,
    use_entry_points: bool = True,
    disabled: Iterable[str] | None = None,
    extra: Iterable[ModuleType | object] = (),
) -> PluginHost:
    """Load built-ins, entry points and plugin_dirs files, then collect their registrations.

    `disabled` names plugins to skip (default: ``$POSTBACKD_DISABLE_PLUGINS``, comma-separated):
    a built-in by module name, an entry point by its name, a file by its stem. `extra`
    registers objects directly (tests). Raises PluginError naming the plugin.
    """
    skip = set(disabled if disabled is not None else _disabled_from_env())
    seen: set[str] = set()
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    host = PluginHost(manager)
    for module_name in DEFAULT_PLUGINS:
        seen.add(module_name)
        if module_name not in skip:
            origin = Origin(OriginKind.BUILTIN, module_name, __version__)
            _register(host, _import(module_name, origin), module_name, origin)
    if use_entry_points:
        for entry in entry_points(group=PROJECT):
            seen.add(entry.name)
            if entry.name in skip:
                continue
            dist = entry.dist
            origin = Origin(
                OriginKind.ENTRY_POINT,
                entry.value,
                dist.version if dist else "-",
                dist.name if dist else None,
            )
            try:
                module = entry.load()
            except Exception as exc:
                raise PluginError(_import_failed(entry.name, origin, exc)) from exc
            _register(host, module, entry.name, origin)
    for directory in plugin_dirs:
        for path in _plugin_files(directory):
            name = path.stem if path.suffix == ".py" else path.name
            seen.add(name)
            if name not in skip:
                module = _import_path(name, path)
                version = str(getattr(module, "__version__", "-"))
                origin = Origin(OriginKind.FILE, str(path), version)
                _register(host, module, name, origin)
    for index, obj in enumerate(extra):
        name = getattr(obj, "__name__", f"extra-{index}")
        _register(host, obj, name, Origin(OriginKind.IN_PROCESS, name))
    _check_hook_names(host)
    _collect(host)
    for name in sorted(skip - seen) if use_entry_points else ():
        log.warning(f"{DISABLE_ENV} names a plugin that is not installed", plugin=name)
    return host


def instantiate(
    cls: type, settings: Mapping[str, Any], context: PluginContext, *, label: str | None = None
) -> Any:
    """Build a registered class: ``cls(settings)``, or ``cls(settings, context=...)`` if it asks.

    `label` (``[sources.NAME]``) says where the settings came from in the error.
    """
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    where = f"{label}: " if label else ""
    what = f"{cls.__module__}.{cls.__qualname__}"
    try:
        if "context" in parameters:
            return cls(dict(settings), context=context)
        return cls(dict(settings))
    except (ValueError, TypeError) as exc:
        raise PluginError(f"{where}{what}: invalid settings: {exc}") from exc
    except Exception as exc:
        raise PluginError(
            f"{where}{what} raised {type(exc).__name__} when built: {exc}{_raised_at(exc)}"
        ) from exc


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


def _import(module_name: str, origin: Origin) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(_import_failed(module_name, origin, exc)) from exc


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
        raise PluginError(_import_failed(name, Origin(OriginKind.FILE, str(path)), exc)) from exc
    return module


def _import_failed(name: str, origin: Origin, exc: BaseException) -> str:
    return (
        f"plugin {name!r} ({origin}) failed to import: {type(exc).__name__}: {exc}"
        f"{_raised_at(exc)}. Fix the plugin, or start without it: {DISABLE_ENV}={name}"
    )


def _raised_at(exc: BaseException) -> str:
    """`` (at file:line)`` of the innermost frame that raised, for a plugin author to look at."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" (at {exc.filename}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _register(host: PluginHost, obj: object, name: str, origin: Origin) -> None:
    label = f"plugin {name!r} ({origin})"
    declared = getattr(obj, API_ATTRIBUTE, API_VERSION)
    if declared != API_VERSION:
        raise PluginError(
            f"{label} was written for plugin API version {declared!r}; this postbackd "
            f"{__version__} provides version {API_VERSION}: install a version of the plugin "
            f"made for it"
        )
    _check_unmarked(obj, label)
    previous = host.origins.get(name)
    if previous is not None:
        raise PluginError(
            f"two plugins are named {name!r}: {previous} and {origin}; rename one, or "
            f"disable one with {DISABLE_ENV}"
        )
    try:
        host.manager.register(obj, name=name)
    except ValueError as exc:
        raise PluginError(f"{label} is registered twice: {exc}") from exc
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{label} has a hook that does not fit its specification: {exc}") from exc
    host.origins[name] = origin
    for caller in host.manager.get_hookcallers(obj) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin is obj and _is_async(impl.function):
                raise PluginError(
                    f"{label}: hook {caller.name} is async; postbackd calls hooks "
                    "synchronously — make it a plain def and register objects whose methods "
                    "are async"
                )


def _is_async(function: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def _check_unmarked(obj: object, label: str) -> None:
    """A function named like a hook but not marked ``@hookimpl`` would be ignored silently."""
    marker = f"{PROJECT}_impl"
    for attribute in dir(obj):
        if not attribute.startswith(f"{PROJECT}_"):
            continue
        value = getattr(obj, attribute, None)
        if not callable(value) or hasattr(value, marker) or isinstance(value, type):
            continue
        if attribute in hookspecs.hook_names() or _suggest(attribute):
            raise PluginError(
                f"{label}: {attribute} is not marked @hookimpl, so postbackd would never call "
                "it; add `@hookimpl` (from postbackd.plugin import hookimpl)"
                + _did_you_mean(attribute)
            )


def _check_hook_names(host: PluginHost) -> None:
    """Every hook implementation must match a spec: name the plugin, the hook and a guess."""
    for plugin in host.manager.get_plugins():
        for caller in host.manager.get_hookcallers(plugin) or ():
            if not caller.has_spec():
                name = host.manager.get_name(plugin) or repr(plugin)
                raise PluginError(
                    f"plugin {host.label(name)}: {caller.name} is not a postbackd hook"
                    f"{_did_you_mean(caller.name)}. The hooks are listed in postbackd.hookspecs "
                    "and `postbackd plugins --hooks`"
                )
    try:
        host.manager.check_pending()
    except pluggy.PluginValidationError as exc:  # anything the check above did not name
        name = host.manager.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginError(f"plugin {host.label(name)}: {exc}") from exc


def _suggest(name: str) -> list[str]:
    return difflib.get_close_matches(name, hookspecs.hook_names(), n=1, cutoff=0.75)


def _did_you_mean(name: str) -> str:
    guess = [g for g in _suggest(name) if g != name]
    return f" — did you mean {guess[0]}?" if guess else ""


def _collect(host: PluginHost) -> None:
    """Call every registration hook, one plugin at a time, so duplicates name both plugins."""
    for hook_name, attribute, kind in KINDS:
        table: dict[str, Registered] = getattr(host, attribute)
        caller = getattr(host.manager.hook, hook_name)
        for impl in caller.get_hookimpls():
            register = _registrar(host, table, kind, impl.plugin_name)
            try:
                impl.function(register)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {host.label(impl.plugin_name)} raised in {hook_name}: "
                    f"{type(exc).__name__}: {exc}{_raised_at(exc)}"
                ) from exc


def _registrar(
    host: PluginHost, table: dict[str, Registered], kind: str, plugin_name: str
) -> Callable[[str, Any], None]:
    """The `register` callable one plugin's registration hook receives."""

    def register(name: str, value: Any) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"plugin {host.label(plugin_name)} registered a {kind} under {name!r}: the "
                "name must be a non-empty string"
            )
        previous = table.get(name)
        if previous is not None:
            raise PluginError(
                f"{kind} name {name!r} is registered by two plugins: "
                f"{host.label(previous.plugin)} and {host.label(plugin_name)}; "
                f"disable one with {DISABLE_ENV}"
            )
        table[name] = Registered(name, value, plugin_name)

    return register


REPLACED_CLOSE_DELAY = 60.0


async def close_replaced(plugin: Any, delay: float = REPLACED_CLOSE_DELAY) -> None:
    """Close a delivery plugin a reload replaced, once attempts already using it are over."""
    await asyncio.sleep(delay)
    try:
        await plugin.close()
    except Exception as exc:
        log.error("replaced delivery plugin failed to close", error=str(exc))
