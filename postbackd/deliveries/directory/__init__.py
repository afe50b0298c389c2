"""The directory delivery: each file (a batch's shipment file, or one postback) written into a
local or mounted directory — a temporary name, fsync, then a rename, so a reader of the share
never sees half a file.

A built-in plugin, registered from `postbackd.plugins.DEFAULT_PLUGINS` through the same hook a
third party uses.
"""

from __future__ import annotations

from collections.abc import Callable

from postbackd.deliveries.directory.delivery import DirectoryDelivery
from postbackd.plugin import hookimpl


@hookimpl
def postbackd_register_deliveries(register: Callable[[str, type], None]) -> None:
    register("directory", DirectoryDelivery)


__all__ = ["DirectoryDelivery", "postbackd_register_deliveries"]
