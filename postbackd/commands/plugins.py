"""`postbackd plugins`: which plugins are loaded, where from, and what each registers.

Like ``datasette plugins``: name, version (package metadata for entry points, the module's
``__version__`` or "-" for files, postbackd's own for built-ins), where it came from, and the
names it registers by kind plus any other hooks. It never needs a valid configuration: the
``[daemon] plugin_dirs`` of ``-c DIR`` are read when that directory loads, and otherwise
skipped with a note on stderr. ``--hooks`` prints the hook reference instead.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from postbackd import hookspecs
from postbackd.commands.common import add_conf_dir_option, add_plugin_options, resolve_conf_dir
from postbackd.plugin import API_VERSION
from postbackd.plugins import KINDS, PluginError, PluginHost, load_plugins

REGISTRATION_HOOKS = frozenset(hook for hook, _, _ in KINDS)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    origin: str  # built-in, entry point, file, in-process
    where: str
    package: str | None
    registers: dict[str, list[str]]
    hooks: list[str]

    def summary(self) -> str:
        """``deliveries: webhook; hooks: postbackd_after_delivery``."""
        parts = [
            f"{kind.replace('_', ' ')}: {', '.join(names)}"
            for kind, names in self.registers.items()
        ]
        others = [hook for hook in self.hooks if hook not in REGISTRATION_HOOKS]
        if others:
            parts.append(f"hooks: {', '.join(others)}")
        return "; ".join(parts) or "-"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plugins", help="list the loaded plugins, their versions and what they register"
    )
    add_conf_dir_option(parser)
    add_plugin_options(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.add_argument(
        "--hooks", action="store_true", help="print the hooks a plugin can implement"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.hooks:
        return _print_hooks(args.json)
    try:
        host = load_plugins(_plugin_dirs(args.conf_dir), use_entry_points=not args.no_plugins)
    except PluginError as exc:
        print(f"plugin error: {exc}", file=sys.stderr)
        return 1
    infos = describe(host)
    if args.json:
        print(json.dumps([asdict(info) for info in infos], indent=2))
        return 0
    rows = [("NAME", "VERSION", "FROM", "REGISTERS")]
    rows += [(i.name, i.version, _origin(i), i.summary()) for i in infos]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[3]]))
    return 0


def describe(host: PluginHost) -> list[PluginInfo]:
    """One `PluginInfo` per loaded plugin, in load order."""
    return [
        PluginInfo(
            name=name,
            version=origin.version,
            origin=str(origin.kind),
            where=origin.where,
            package=origin.package,
            registers=host.registered_by(name),
            hooks=host.hooks_of(name),
        )
        for name, origin in host.origins.items()
    ]


def _origin(info: PluginInfo) -> str:
    if info.origin == "entry point":
        return f"entry point {info.where} ({info.package or '?'})"
    if info.origin == "file":
        return f"file {info.where}"
    return info.origin


def _plugin_dirs(explicit: Path | None) -> tuple[Path, ...]:
    """``[daemon] plugin_dirs`` of the configuration directory, if it loads; else none."""
    from postbackd.config import ConfigError, load_config

    conf_dir = resolve_conf_dir(explicit)
    if not conf_dir.is_dir():
        if explicit is not None:
            print(f"{conf_dir}: not a directory; plugin_dirs not read", file=sys.stderr)
        return ()
    try:
        return load_config(conf_dir, expand_secrets=False).daemon.plugin_dirs
    except ConfigError:
        print(
            f"{conf_dir}: the configuration has errors (see `postbackd check`); "
            "its plugin_dirs were not read",
            file=sys.stderr,
        )
        return ()


def _print_hooks(as_json: bool) -> int:
    hooks: list[dict[str, Any]] = []
    for name in hookspecs.hook_names():
        function = getattr(hookspecs, name)
        doc = inspect.getdoc(function) or ""
        hooks.append(
            {
                "name": name,
                "signature": f"{name}{inspect.signature(function)}".replace("'", ""),
                "summary": doc.splitlines()[0] if doc else "",
                "firstresult": bool(getattr(function, "postbackd_spec", {}).get("firstresult")),
            }
        )
    if as_json:
        print(json.dumps({"api_version": API_VERSION, "hooks": hooks}, indent=2))
        return 0
    print(f"postbackd plugin API version {API_VERSION} (from postbackd.plugin import hookimpl)")
    for hook in hooks:
        print(f"\n{hook['signature']}\n    {hook['summary']}")
    return 0
