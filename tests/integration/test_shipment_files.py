"""Shipment files end to end: a real daemon batches a trigger's deliveries into one file per
window and writes it into a directory (the ``directory`` delivery) or uploads it to a real
SFTP server started in the test (the ``sftp`` delivery, tests/deliveries/sftp/server.py).

What is checked is what a receiver sees: one file with every row after the window, nothing
for an empty window, the same file (name and bytes) again after a crash, a failing server
retried with the one file — and each delivery's request log naming the file.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postbackd.testing import PostbackdDaemon, event_payload

WINDOW = "2s"
CSV_TEMPLATE = {
    "name": "shipments-csv",
    "format": "text",
    "header": "orderId,status,trigger={{ batch.trigger }},rows={{ batch.rows }}",
    "body": "{{ orderId }},{{ fulfillmentStatus }}",
    "footer": "# end of {{ batch.file }}",
}


def batching_daemon(
    make: Callable[..., PostbackdDaemon], delivery: str, options: dict[str, Any], **trigger: Any
) -> PostbackdDaemon:
    daemon = make(
        triggers=[
            {
                "name": "shipments",
                "events": ["order.shipped"],
                "template": "shipments-csv",
                "delivery": delivery,
                "batch": WINDOW,
                "batch_file": "{customer}-{end:%Y%m%d%H%M%S}{part}.csv",
                "options": options,
                **trigger,
            }
        ]
    )
    daemon.write("templates.toml", {"template": [CSV_TEMPLATE]})
    return daemon


async def wait_files(directory: Path, count: int, timeout: float = 15.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while True:
        listed = directory.iterdir() if directory.is_dir() else ()
        found = sorted(p for p in listed if not p.name.startswith("."))
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{count} files not in {directory}: {found}"
        await asyncio.sleep(0.1)


async def test_directory_delivery_writes_one_file_per_window(
    postbackd_daemon: Callable[..., PostbackdDaemon], tmp_path: Path
) -> None:
    outgoing = tmp_path / "share"
    daemon = await batching_daemon(
        postbackd_daemon, "directory", {"path": str(outgoing), "create": True}
    ).start()
    await daemon.submit(*(event_payload(f"e-{n}", order=f"o-{n}") for n in range(5)))
    pending = await daemon.deliveries()
    assert len(pending) == 5 and {d["state"] for d in pending} == {"pending"}

    (written,) = await wait_files(outgoing, 1)
    lines = written.read_text().splitlines()
    assert lines[0] == "orderId,status,trigger=shipments,rows=5"
    assert lines[1:6] == [f"o-{n},shipped" for n in range(5)]
    assert lines[6] == f"# end of {written.name}"
    done = await daemon.wait_for_deliveries(5, states=["done"])
    detail = await daemon.delivery(done[0]["id"])
    (attempt,) = detail["attempts"]
    assert attempt["request"]["file"] == written.name
    assert attempt["request"]["rows"] == 5

    await asyncio.sleep(3.0)  # an empty window: nothing more is written
    assert sorted(p.name for p in outgoing.iterdir()) == [written.name]
