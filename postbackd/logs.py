"""structlog set-up: JSON lines on stderr for journald, readable key=value on a TTY.

Every log line about an event or a delivery carries its ids (``event_id``, ``delivery_id``,
``customer``, ``trigger``) as keys, so ``journalctl -o cat | jq`` can follow one postback.
Libraries that log through the standard `logging` module (aiohttp, aio-pika, asyncio) are
rendered by the same processors, so a non-TTY stderr holds nothing but JSON objects.

Secret values are never passed to a logger; as a second line of defence, a value logged under
a key that names a secret (``password``, ``token``, ``authorization``, ``*_secret`` …) is
replaced by ``***`` before it is rendered, and so is, in any string of a line (a message, an
error, a traceback), any value the configuration in force holds as a secret
(`mask_secret_values`, `postbackd.redaction`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from postbackd.redaction import NO_SECRETS, Redactor

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


class _SecretValues:
    """The redactor of the configuration in force, for every log line (set by the daemon).

    Logging is process-wide, so this is the one piece of process-wide state besides it: the
    daemon replaces the redactor at start and at each applied reload.
    """

    redactor: Redactor = NO_SECRETS


def mask_secret_values(redactor: Redactor) -> None:
    """Mask these secret values in every log line from now on (the configuration in force)."""
    _SecretValues.redactor = redactor


def redact_secret_values(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask known secret values wherever they appear in a line's strings (a structlog processor)."""
    redactor = _SecretValues.redactor
    if redactor:
        for key, value in event_dict.items():
            if isinstance(value, str):
                event_dict[key] = redactor.text(value)
            elif isinstance(value, list | tuple | dict):
                event_dict[key] = redactor.tree(value)
    return event_dict


def configure_logging(level: str = "info", *, json_lines: bool | None = None) -> None:
    """Route structlog and the stdlib logging of libraries to stderr at `level`."""
    global _configurations
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
            redact_secret_values,
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
                redact_secret_values,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    # Libraries are chatty (aio-pika at INFO, watchdog's every inotify event at DEBUG): their
    # warnings and errors are what an operator needs; their INFO when debugging postbackd.
    root.setLevel(logging.INFO if numeric == logging.DEBUG else max(numeric, logging.WARNING))
    _configurations += 1


class _NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger on stderr that knows its name, for the ``logger`` key of each line."""

    def __init__(self, name: str) -> None:
        super().__init__(sys.stderr)
        self.name = name

    @classmethod
    def factory(cls, *args: Any) -> _NamedPrintLogger:
        return cls(str(args[0]) if args else "postbackd")


_configurations = 0  # bumped by configure_logging: every Logger binds again


class Logger:
    """What `get_logger` returns: structlog's logger, bound once per configuration.

    structlog's lazy proxy builds a new bound logger at every call unless it caches on first
    use, and a cached one would keep a configuration made before `configure_logging` (module
    loggers exist from import time). This keeps one per configuration, so a call below the
    level costs a method call — the delivery path logs at info for every attempt.
    """

    __slots__ = ("_bound", "_configuration", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._bound: Any = None
        self._configuration = -1

    def _logger(self) -> Any:
        if self._configuration != _configurations:
            self._bound = structlog.get_logger(self._name).bind()
            self._configuration = _configurations
        return self._bound

    def debug(self, event: str, **fields: Any) -> None:
        self._logger().debug(event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._logger().info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._logger().warning(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._logger().error(event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._logger().exception(event, **fields)


def get_logger(name: str) -> Logger:
    """A logger whose lines carry ``logger=name`` (bound at first use after each configure)."""
    return Logger(name)
