"""Shipment-file batching, the rule model: a trigger's ``batch`` window (`parse_batch`,
`BatchWindow`, `window_key`) and its ``batch_file`` names (`file_name`, `check_file_name`).

The loop that closes windows into files and sends them is `postbackd.batching.batcher.Batcher`,
imported from there by the daemon: it is not named here, so that loading a configuration
(`postbackd.config` reads ``batch`` and ``batch_file`` through this face) does not import the
spool, the attempt path and the plugins.

Inside: `windows` (a window's bounds and key), `file_names` (the files' names), `batcher`.
"""

from postbackd.batching.file_names import (
    DEFAULT_FILE_NAME,
    EXTENSIONS,
    check_file_name,
    file_name,
)
from postbackd.batching.windows import BatchWindow, parse_batch, window_end_of, window_key

__all__ = [
    "DEFAULT_FILE_NAME",
    "EXTENSIONS",
    "BatchWindow",
    "check_file_name",
    "file_name",
    "parse_batch",
    "window_end_of",
    "window_key",
]
