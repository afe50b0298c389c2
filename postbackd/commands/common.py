"""Helpers shared by subcommands: the configuration directory option and its resolution."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from postbackd.generation import Plugins

SYSTEM_CONF_DIR = Path("/etc/postbackd/conf.d")


def add_conf_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--conf-dir",
        type=Path,
        metavar="DIR",
        help="configuration directory (default: $POSTBACKD_CONF_DIR, else "
        "/etc/postbackd/conf.d if it exists, else ./conf.d)",
    )


def resolve_conf_dir(explicit: Path | None) -> Path:
    """`-c DIR`, else $POSTBACKD_CONF_DIR, else /etc/postbackd/conf.d if present, else ./conf.d."""
    if explicit is not None:
        return explicit
    env = os.environ.get("POSTBACKD_CONF_DIR")
    if env:
        return Path(env)
    if SYSTEM_CONF_DIR.is_dir():
        return SYSTEM_CONF_DIR
    return Path("conf.d")


def add_plugin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-plugins",
        action="store_true",
        help="load only the built-in plugins (no entry points; plugin_dirs still apply)",
    )


def open_or_report(args: argparse.Namespace, *, stream: TextIO) -> tuple[Path, Plugins] | None:
    """Resolve the configuration directory and load its plugins, or print why not."""
    from postbackd.generation import open_plugins
    from postbackd.plugins import PluginError

    conf_dir = resolve_conf_dir(args.conf_dir)
    if not conf_dir.is_dir():
        print(f"{conf_dir}: configuration directory not found (give one with -c DIR)", file=stream)
        return None
    try:
        plugins = open_plugins(conf_dir, use_entry_points=not getattr(args, "no_plugins", False))
    except PluginError as exc:
        print(f"plugin error: {exc}", file=stream)
        return None
    return conf_dir, plugins


def admin_base_url(conf_dir: Path) -> tuple[str, str | None]:
    """Where the running daemon's admin API listens, and its admin token, from the config.

    The listener of the source that serves the admin API (its `AdminEndpoint`) when there is
    one, else ``[daemon] admin_listen``; so the plugins are loaded, as the daemon loads them.
    Secrets are resolved as the daemon resolves them (this runs as ExecReload, in the unit's
    environment). Raises ConfigError, a plugin that cannot be loaded included.
    """
    from postbackd.config import ConfigError, Diagnostic, load_config
    from postbackd.generation import open_plugins
    from postbackd.plugins import PluginError

    try:
        plugins = open_plugins(conf_dir)
    except PluginError as exc:
        raise ConfigError([Diagnostic(conf_dir, 0, f"plugin error: {exc}")]) from exc
    config = load_config(conf_dir, classes=plugins.classes(), resolve_secret=plugins.resolve_secret)
    endpoint = config.admin_endpoint
    listen = endpoint.listen if endpoint is not None else config.daemon.admin_listen
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}", config.daemon.admin_token
