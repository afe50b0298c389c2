"""The name a file delivery (directory, sftp) stores a delivery under.

A shipment file carries its own name, fixed when its window closed (`Delivery.file_name`); a
single postback sent through a file delivery is named after its delivery id, so a retry
replaces the same file instead of adding another.
"""

from __future__ import annotations

from postbackd.batching import EXTENSIONS
from postbackd.plugin import Delivery


def target_name(delivery: Delivery) -> str:
    if delivery.file_name:
        return delivery.file_name
    return f"{delivery.id}.{EXTENSIONS.get(delivery.format, 'txt')}"


def temporary_name(name: str, delivery: Delivery) -> str:
    """A name no reader picks up (a leading dot, a ``.part`` end), unique per attempt."""
    return f".{name}.{delivery.attempt}.part"
