"""The file-drop source: event files dropped into a directory (DESIGN §8, docs/filedrop.md).

A built-in plugin, registered from `postbackd.plugins.DEFAULT_PLUGINS` through the same hook a
third party uses.
"""

from __future__ import annotations

from collections.abc import Callable

from postbackd.plugin import hookimpl
from postbackd.sources.filedrop.source import FileDropSource


@hookimpl
def postbackd_register_sources(register: Callable[[str, type], None]) -> None:
    register("filedrop", FileDropSource)


__all__ = ["FileDropSource", "postbackd_register_sources"]
