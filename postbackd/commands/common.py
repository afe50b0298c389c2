"""Helpers shared by subcommands: the configuration directory option and its resolution."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

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
    """`-c DIR`, else $POSTBACKD_CONF_DIR, else /etc/postbackd/conf.d if it exists, else ./conf.d."""
    if explicit is not None:
        return explicit
    env = os.environ.get("POSTBACKD_CONF_DIR")
    if env:
        return Path(env)
    if SYSTEM_CONF_DIR.is_dir():
        return SYSTEM_CONF_DIR
    return Path("conf.d")
