"""The AMQP source: consumes a RabbitMQ queue, acknowledging a message once its event is stored.

A built-in plugin, registered from `postbackd.plugins.DEFAULT_PLUGINS` through the same hook a
third party uses.
"""

from __future__ import annotations

from collections.abc import Callable

from postbackd.plugin import hookimpl
from postbackd.sources.amqp.source import AmqpSource


@hookimpl
def postbackd_register_sources(register: Callable[[str, type], None]) -> None:
    register("amqp", AmqpSource)


__all__ = ["AmqpSource", "postbackd_register_sources"]
