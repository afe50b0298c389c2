"""The email delivery: the rendered message through the PSP's own SMTP server (aiosmtplib).

A built-in plugin, registered from `postbackd.plugins.DEFAULT_PLUGINS` through the same hook a
third party uses.
"""

from __future__ import annotations

from collections.abc import Callable

from postbackd.deliveries.email.delivery import EmailDelivery
from postbackd.plugin import hookimpl


@hookimpl
def postbackd_register_deliveries(register: Callable[[str, type], None]) -> None:
    register("email", EmailDelivery)


__all__ = ["EmailDelivery", "postbackd_register_deliveries"]
