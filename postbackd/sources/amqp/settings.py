"""The ``[sources.amqp]`` table, read into a frozen `AmqpSettings` with the typed settings
reader (`postbackd.plugin.SettingsReader`).

Every problem in the table is reported at once, each at its key and saying what to write, so
``postbackd check`` shows them all in one run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from yarl import URL

from postbackd.plugin import SettingsReader

QueueType = Literal["classic", "quorum"]
QUEUE_TYPES: tuple[QueueType, ...] = ("classic", "quorum")
DEFAULT_URL = "amqp://guest:guest@localhost/"
_DECLARE_ONLY = (
    "queue_type",
    "exchange",
    "routing_key",
    "dead_letter_exchange",
    "delivery_limit",
)
_KNOWN = frozenset({"url", "queue", "prefetch", "declare", "reconnect_interval", *_DECLARE_ONLY})


@dataclass(frozen=True)
class AmqpSettings:
    """What the AMQP source connects to and consumes. See `postbackd.sources.amqp.source`."""

    queue: str
    url: str = DEFAULT_URL
    prefetch: int = 64
    declare: bool = False
    queue_type: QueueType = "classic"
    exchange: str | None = None
    routing_key: str | None = None
    dead_letter_exchange: str | None = None
    delivery_limit: int | None = None
    reconnect_interval: float = 2.0

    @property
    def safe_url(self) -> str:
        """The URL with its password masked, for logs and error messages."""
        url = URL(self.url)
        return str(url.with_password("******")) if url.password else str(url)

    @classmethod
    def read(cls, reader: SettingsReader) -> AmqpSettings:
        """Read a ``[sources.amqp]`` table; each problem is reported at its key."""
        reader.check_keys(_KNOWN)
        data = reader.data
        queue = reader.string("queue")
        if queue is None and "queue" not in data:
            reader.error(
                'missing required key "queue": the name of the queue to consume, '
                'e.g. "order-events"'
            )
        elif queue is not None and not queue.strip():
            reader.error("must not be empty: the name of the queue to consume", "queue")
        url = reader.string("url", DEFAULT_URL) or DEFAULT_URL
        if URL(url).scheme not in ("amqp", "amqps"):
            reader.error(f"expected an amqp:// or amqps:// URL, got {reader.shown('url')}", "url")
        declare = reader.boolean("declare", False)
        queue_type = reader.choice("queue_type", QUEUE_TYPES, "classic")
        exchange, routing_key, dead_letter_exchange = (
            reader.string(key) for key in ("exchange", "routing_key", "dead_letter_exchange")
        )
        if not declare:
            for key in _DECLARE_ONLY:
                if key in data:
                    reader.error(
                        "only used with declare = true (without it the queue is consumed as it "
                        "exists on the broker); set declare = true or remove it",
                        key,
                    )
        delivery_limit = None
        if "delivery_limit" in data:
            # 1 stands in for a value of the wrong type (reported): 0 can only be written
            delivery_limit = reader.integer("delivery_limit", 1, minimum=-1)
            if delivery_limit == 0:
                reader.error(
                    "expected -1 (no limit) or a whole number > 0, got 0", "delivery_limit"
                )
            if queue_type != "quorum":
                reader.error(
                    'only quorum queues have one: set queue_type = "quorum"', "delivery_limit"
                )
        if routing_key is not None and exchange is None:
            reader.error("needs exchange: the exchange to bind the queue to", "routing_key")
        reconnect = reader.duration("reconnect_interval", 2.0)
        if reconnect <= 0:
            reader.error("must be longer than 0s", "reconnect_interval")
        return cls(
            queue=queue or "",
            url=url,
            prefetch=reader.integer("prefetch", 64, minimum=1, maximum=65535),
            declare=declare,
            queue_type=cast(QueueType, queue_type),
            exchange=exchange,
            routing_key=routing_key,
            dead_letter_exchange=dead_letter_exchange,
            delivery_limit=delivery_limit,
            reconnect_interval=reconnect,
        )

    def queue_arguments(self) -> dict[str, Any]:
        """The x-arguments a declared queue gets (type, dead-letter exchange, delivery limit)."""
        arguments: dict[str, Any] = {}
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
        if self.dead_letter_exchange is not None:
            arguments["x-dead-letter-exchange"] = self.dead_letter_exchange
        if self.delivery_limit is not None:
            arguments["x-delivery-limit"] = self.delivery_limit
        return arguments
