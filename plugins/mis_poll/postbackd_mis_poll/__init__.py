"""postbackd-mis-poll: a source that polls an MIS for order-status changes.

    [sources.mis-poll]
    url = "https://mis.example.com/api/postback-changes"
    ack_url = "https://mis.example.com/api/postback-changes/ack"
    token = "${env:MIS_TOKEN}"
    state_file = "/var/lib/postbackd/mis-poll.cursor"
    interval = "15s"

Events are acknowledged upstream (cursor saved, ``ack_url`` called) only after postbackd has
stored them; see `postbackd_mis_poll.source` for the protocol and the guarantees.
"""

from __future__ import annotations

from postbackd.plugin import RegisterSource, hookimpl
from postbackd_mis_poll.source import MisPollSource

__version__ = "0.1.0"
POSTBACKD_API_VERSION = 1

__all__ = ["MisPollSource"]


@hookimpl
def postbackd_register_sources(register: RegisterSource) -> None:
    register("mis-poll", MisPollSource)
