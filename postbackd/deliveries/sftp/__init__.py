"""The sftp delivery: each file (a batch's shipment file, or one postback) uploaded to an SFTP
server under a temporary name, then renamed, with the server's host key pinned.

asyncssh is an optional extra (``pip install postbackd[sftp]``): without it the plugin is still
registered, and `postbackd check` says what to install for a trigger that uses it. A built-in
plugin, registered from `postbackd.plugins.DEFAULT_PLUGINS` like anyone's.
"""

from __future__ import annotations

from collections.abc import Callable

from postbackd.deliveries.sftp.delivery import SftpDelivery
from postbackd.plugin import hookimpl


@hookimpl
def postbackd_register_deliveries(register: Callable[[str, type], None]) -> None:
    register("sftp", SftpDelivery)


__all__ = ["SftpDelivery", "postbackd_register_deliveries"]
