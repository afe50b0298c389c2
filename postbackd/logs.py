"""structlog set-up: JSON lines on stderr for journald, readable key=value on a TTY.

Every log line about an event or a delivery carries its ids (``event_id``, ``delivery_id``,
``customer``, ``trigger``) as keys, so ``journalctl -o cat | jq`` can follow one postback.
Libraries that log through the standard `logging` module (aiohttp, aio-pika, asyncio) are
rendered by the same processors, so a non-TTY stderr holds nothing but JSON objects.

Secret values are never passed to a logger; as a second line of defence, a value logged under
a key that names a secret (``password``, ``token``, ``authorization``, ``*_secret`` …) is
replaced by ``***`` before it is rendered.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
SECRET_KEYS = frozenset(
    {"password", "passwd", "secret", "secrets", "token", "authorization", "api_key", "apikey"}
)
SECRET_KEY_SUFFIXES = ("_password", "_secret", "_token")
MASK = "***"


def redact_secrets(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask values logged under a secret's name (a structlog processor)."""
    for key in event_dict:
        lowered = key.lower()
        if lowered in SECRET_KEYS or lowered.endswith(SECRET_KEY_SUFFIXES):
            event_dict[key] = MASK
    return event_dict


def configure_logging(level: str = "info", *, json_lines: bool | None = None) -> None:
    """Route structlog and the stdlib logging of libraries to stderr at `level`."""
    numeric = _LEVELS[level]
    as_json = (not sys.stderr.isatty()) if json_lines is None else json_lines
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_NamedPrintLogger.factory,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_secrets,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    # Libraries are chatty (aio-pika at INFO, watchdog's every inotify event at DEBUG): their
    # warnings and errors are what an operator needs; their INFO when debugging postbackd.
    root.setLevel(logging.INFO if numeric == logging.DEBUG else max(numeric, logging.WARNING))


class _NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger on stderr that knows its name, for the ``logger`` key of each line."""

    def __init__(self, name: str) -> None:
        super().__init__(sys.stderr)
        self.name = name

    @classmethod
    def factory(cls, *args: Any) -> _NamedPrintLogger:
        return cls(str(args[0]) if args else "postbackd")


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger whose lines carry ``logger=name`` (built lazily, after configure_logging)."""
    return structlog.get_logger(name)
