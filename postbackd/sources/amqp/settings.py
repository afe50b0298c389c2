"""The ``[sources.amqp]`` table, validated into a frozen `AmqpSettings`.

Every problem in the table is reported at once, each naming the key and what to write, so
``postbackd check`` can show them all in one run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from yarl import URL

from postbackd.units import parse_duration

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
    def from_mapping(cls, settings: Mapping[str, Any], table: str = "sources.amqp") -> AmqpSettings:
        """Validate a ``[sources.amqp]`` table; raises ValueError listing every problem."""
        problems: list[str] = []

        def problem(key: str, text: str) -> None:
            problems.append(f"[{table}] {key}: {text}")

        for key in sorted(set(settings) - _KNOWN):
            problem(key, f"unknown setting; known: {', '.join(sorted(_KNOWN))}")

        queue = settings.get("queue")
        if not isinstance(queue, str) or not queue.strip():
            problem("queue", 'required: the name of the queue to consume, e.g. "order-events"')
            queue = ""

        url = settings.get("url", DEFAULT_URL)
        if not isinstance(url, str) or URL(url).scheme not in ("amqp", "amqps"):
            problem("url", f"expected an amqp:// or amqps:// URL, got {url!r}")
            url = DEFAULT_URL

        prefetch = settings.get("prefetch", 64)
        if (
            not isinstance(prefetch, int)
            or isinstance(prefetch, bool)
            or not 1 <= prefetch <= 65535
        ):
            problem("prefetch", f"expected a whole number from 1 to 65535, got {prefetch!r}")
            prefetch = 64

        declare = settings.get("declare", False)
        if not isinstance(declare, bool):
            problem("declare", f"expected true or false, got {declare!r}")
            declare = False

        queue_type = settings.get("queue_type", "classic")
        if queue_type not in QUEUE_TYPES:
            problem("queue_type", f'expected "classic" or "quorum", got {queue_type!r}')
            queue_type = "classic"

        names: dict[str, str | None] = {}
        for key in ("exchange", "routing_key", "dead_letter_exchange"):
            value = settings.get(key)
            if value is not None and not isinstance(value, str):
                problem(key, f"expected a string, got {value!r}")
                value = None
            names[key] = value

        if not declare:
            for key in _DECLARE_ONLY:
                if key in settings:
                    problem(
                        key,
                        "only used with declare = true (without it the queue is consumed "
                        "as it exists on the broker); set declare = true or remove it",
                    )
        delivery_limit = settings.get("delivery_limit")
        if delivery_limit is not None and (
            not isinstance(delivery_limit, int)
            or isinstance(delivery_limit, bool)
            or delivery_limit < -1
            or delivery_limit == 0
        ):
            problem(
                "delivery_limit",
                f"expected -1 (no limit) or a whole number > 0, got {delivery_limit!r}",
            )
            delivery_limit = None
        if delivery_limit is not None and queue_type != "quorum":
            problem("delivery_limit", 'only quorum queues have one: set queue_type = "quorum"')
        if names["routing_key"] is not None and names["exchange"] is None:
            problem("routing_key", "needs exchange: the exchange to bind the queue to")

        try:
            reconnect = parse_duration(settings.get("reconnect_interval", "2s"))
        except ValueError as exc:
            problem("reconnect_interval", str(exc))
            reconnect = 2.0
        if reconnect <= 0:
            problem("reconnect_interval", "must be longer than 0s")

        if problems:
            raise ValueError("\n".join(problems))
        return cls(
            queue=queue,
            url=url,
            prefetch=prefetch,
            declare=declare,
            queue_type=cast(QueueType, queue_type),
            exchange=names["exchange"],
            routing_key=names["routing_key"],
            dead_letter_exchange=names["dead_letter_exchange"],
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
