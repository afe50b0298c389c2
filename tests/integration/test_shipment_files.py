"""Shipment files end to end: a real daemon batches a trigger's deliveries into one file per
window and writes it into a directory (the ``directory`` delivery) or uploads it to a real
SFTP server started in the test (the ``sftp`` delivery, tests/deliveries/sftp/server.py).

What is checked is what a receiver sees: one file with every row after the window, nothing
for an empty window, the same file (name and bytes) again after a crash, a failing server
retried with the one file — and each delivery's request log naming the file.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh

from postbackd.testing import PostbackdDaemon, event_payload
from postbackd.testing.waiting import until_async
from tests.pg_fixtures import pg_cluster, pg_url
from tests.sftp_server import SftpServer

__all__ = ["pg_cluster", "pg_url"]

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


async def at_window_start() -> None:
    """Wait until a window has just begun, so events sent now all fall into that one window
    (windows are aligned to the clock: one that straddled a boundary would make two files)."""
    seconds = float(WINDOW.rstrip("s"))
    into = time.time() % seconds
    await asyncio.sleep(seconds - into + 0.05)


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
    await at_window_start()
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

    # the operator resends one row with today's template: it goes out in one more file
    daemon.write(
        "templates.toml",
        {"template": [{**CSV_TEMPLATE, "body": "{{ orderId }},{{ fulfillmentStatus }},again"}]},
    )
    daemon.signal(signal.SIGHUP)
    await until_async(lambda: _reloaded(daemon, 2), 15, "the new template loaded")
    resent = daemon.command("queue", "resend", done[0]["id"], "--rerender")
    assert resent.returncode == 0, resent.stderr
    second = [p for p in await wait_files(outgoing, 2) if p.name != written.name]
    (again,) = second
    assert again.name.endswith("-2.csv")
    assert again.read_text().splitlines()[1].endswith(",shipped,again")


async def test_a_directory_that_is_not_there_is_retried_as_one_file(
    postbackd_daemon: Callable[..., PostbackdDaemon], tmp_path: Path
) -> None:
    share = tmp_path / "not-mounted-yet"
    daemon = await batching_daemon(
        postbackd_daemon, "directory", {"path": str(share)}, retry_schedule=["1s"] * 10
    ).start()
    await at_window_start()
    await daemon.submit(*(event_payload(f"m-{n}", order=f"o-{n}") for n in range(2)))
    ids = [d["id"] for d in await daemon.deliveries()]
    await until_async(lambda: _has_attempt(daemon, ids[0]), 15, "a failed write")
    share.mkdir()  # the share is mounted: the next attempt writes the file
    await daemon.wait_for_deliveries(2, states=["done"], timeout=15)
    (written,) = await wait_files(share, 1)
    assert written.read_text().count(",shipped") == 2
    for delivery_id in ids:
        attempts = (await daemon.delivery(delivery_id))["attempts"]
        assert [a["outcome"] for a in attempts][-1] == "ok"
        assert "does not exist: create it (or mount the share)" in attempts[0]["error"]
        assert {a["request"]["file"] for a in attempts} == {written.name}


async def test_a_fleet_on_postgresql_writes_each_window_once(
    postbackd_daemon: Callable[..., PostbackdDaemon], tmp_path: Path, pg_url: str
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    nodes = []
    for name in ("pb-1", "pb-2"):
        node = postbackd_daemon(
            daemon={"spool": pg_url, "node": name, "lease": "2s"},
            triggers=[
                {
                    "name": "shipments",
                    "events": ["order.shipped"],
                    "template": "shipments-csv",
                    "delivery": "directory",
                    "batch": WINDOW,
                    "options": {"path": str(share)},
                }
            ],
        )
        node.write("templates.toml", {"template": [CSV_TEMPLATE]})
        nodes.append(await node.start())
    await at_window_start()
    await nodes[0].submit(*(event_payload(f"a-{n}", order=f"a-{n}") for n in range(3)))
    await nodes[1].submit(*(event_payload(f"b-{n}", order=f"b-{n}") for n in range(3)))
    await nodes[0].wait_for_deliveries(6, states=["done"], timeout=20)
    (written,) = await wait_files(share, 1)
    lines = written.read_text().splitlines()
    assert lines[0].endswith("rows=6")
    assert sorted(lines[1:7]) == sorted(f"{p}-{n},shipped" for p in "ab" for n in range(3))
    await asyncio.sleep(2.5)
    assert [p.name for p in share.iterdir() if not p.name.startswith(".")] == [written.name]


JSONL_TEMPLATE = {
    "name": "shipments-jsonl",
    "format": "json",
    "header": '{"file": "{{ batch.file }}", "rows": {{ batch.rows }}}',
    "body": '{"orderId": "{{ orderId }}", "ref": "{{ orderReferenceId }}"}',
}


async def test_hostile_values_stay_inside_their_json_line(
    postbackd_daemon: Callable[..., PostbackdDaemon], tmp_path: Path
) -> None:
    outgoing = tmp_path / "share"
    outgoing.mkdir()
    daemon = batching_daemon(
        postbackd_daemon,
        "directory",
        {"path": str(outgoing)},
        template="shipments-jsonl",
        batch_file="{trigger}-{end:%H%M%S}{part}.{ext}",
    )
    daemon.write("templates.toml", {"template": [CSV_TEMPLATE, JSONL_TEMPLATE]})
    await daemon.start()
    hostile = 'x"}\n{"injected": true, "ref": "\u2028</a>'
    await at_window_start()
    await daemon.submit(
        event_payload("h-1", order="o-1", orderReferenceId=hostile),
        event_payload("h-2", order="o-2"),
    )
    (written,) = await wait_files(outgoing, 1)
    assert written.suffix == ".jsonl"
    lines = [json.loads(line) for line in written.read_text().splitlines()]
    assert lines == [
        {"file": written.name, "rows": 2},
        {"orderId": "o-1", "ref": hostile},
        {"orderId": "o-2", "ref": "ref-o-2"},
    ]
    assert (await daemon.get("/readyz"))[0] == 200


async def test_sftp_one_file_per_window_and_a_failing_server_is_retried_as_one(
    postbackd_daemon: Callable[..., PostbackdDaemon], sftp_server: SftpServer
) -> None:
    sftp_server.failures = 1
    daemon = await batching_daemon(
        postbackd_daemon, "sftp", sftp_server.options(), retry_schedule=["1s", "1s", "1s"]
    ).start()
    await at_window_start()
    await daemon.submit(*(event_payload(f"e-{n}", order=f"o-{n}") for n in range(3)))
    done = await daemon.wait_for_deliveries(3, states=["done"], timeout=20)
    ((name, body),) = sftp_server.files().items()
    assert body.decode().splitlines()[1:4] == ["o-0,shipped", "o-1,shipped", "o-2,shipped"]
    assert sftp_server.uploads == [name]  # one file, uploaded once it got through
    for delivery in done:
        attempts = (await daemon.delivery(delivery["id"]))["attempts"]
        assert [a["outcome"] for a in attempts] == ["retry", "ok"]
        assert "disk quota exceeded" in attempts[0]["error"]
        assert {a["request"]["file"] for a in attempts} == {name}
        assert "s3cret-pass" not in json.dumps(attempts)
    metrics = await daemon.metrics()
    assert 'postbackd_deliveries_total{customer="acme",outcome="retry",plugin="sftp"} 1.0' in (
        metrics
    )
    assert 'postbackd_deliveries_total{customer="acme",outcome="ok",plugin="sftp"} 1.0' in metrics
    await asyncio.sleep(3.0)  # the next window is empty: nothing is uploaded
    assert sftp_server.uploads == [name]


async def test_a_wrong_host_key_is_refused_and_nothing_is_lost(
    postbackd_daemon: Callable[..., PostbackdDaemon], sftp_server: SftpServer
) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    daemon = batching_daemon(
        postbackd_daemon,
        "sftp",
        sftp_server.options(host_key=impostor),
        retry_schedule=["500ms"] * 20,
    )
    await daemon.start()
    await at_window_start()
    await daemon.submit(*(event_payload(f"k-{n}", order=f"o-{n}") for n in range(2)))
    for delivery in await daemon.deliveries():
        await until_async(lambda d=delivery: _has_attempt(daemon, d["id"]), 15, "a refused attempt")
    detail = await daemon.delivery((await daemon.deliveries())[0]["id"])
    assert detail["delivery"]["state"] == "pending"
    assert f"is {sftp_server.fingerprint}, not the pinned one" in detail["attempts"][0]["error"]
    assert sftp_server.files() == {}
    assert (await daemon.get("/readyz"))[0] == 200
    # the operator pins the right key: the same file goes out, with both rows
    files = daemon_files_with(daemon, sftp_server.options())
    daemon.write("postbackd.toml", files)
    daemon.signal(signal.SIGHUP)
    await daemon.wait_for_deliveries(2, states=["done"], timeout=20)
    ((_, body),) = sftp_server.files().items()
    assert body.decode().count(",shipped") == 2


async def test_kill_9_before_and_after_the_window_closes_resends_the_same_file(
    postbackd_daemon: Callable[..., PostbackdDaemon], sftp_server: SftpServer
) -> None:
    sftp_server.failures = 1000
    daemon = batching_daemon(
        postbackd_daemon, "sftp", sftp_server.options(), retry_schedule=["300ms"] * 50
    )
    await daemon.start()
    await at_window_start()
    await daemon.submit(*(event_payload(f"c-{n}", order=f"o-{n}") for n in range(3)))
    daemon.signal(signal.SIGKILL)  # before the window closed: the rows are in the spool
    await daemon.wait_exit()
    await daemon.start()
    ids = [d["id"] for d in await daemon.deliveries()]
    assert len(ids) == 3
    await until_async(lambda: _has_attempt(daemon, ids[0]), 15, "a failed upload")
    first = (await daemon.delivery(ids[0]))["attempts"][0]["request"]["file"]
    daemon.signal(signal.SIGKILL)  # the file was written into the spool and is being retried
    await daemon.wait_exit()
    sftp_server.failures = 0
    await daemon.start()
    await daemon.wait_for_deliveries(3, states=["done"], timeout=20)
    files = sftp_server.files()
    assert list(files) == [first]  # the same name after the crash: a receiver can dedupe
    assert files[first].decode().splitlines()[1:4] == [f"o-{n},shipped" for n in range(3)]
    for delivery_id in ids:
        attempts = (await daemon.delivery(delivery_id))["attempts"]
        assert {a["request"]["file"] for a in attempts} == {first}


async def _reloaded(daemon: PostbackdDaemon, generation: int) -> bool:
    status, config = await daemon.get("/v1/config")
    return status == 200 and config.get("generation", 0) >= generation


async def _has_attempt(daemon: PostbackdDaemon, delivery_id: str) -> bool:
    return bool((await daemon.delivery(delivery_id))["attempts"])


def daemon_files_with(daemon: PostbackdDaemon, options: dict[str, Any]) -> dict[str, Any]:
    """The daemon's postbackd.toml with the shipments trigger's options replaced."""
    files = tomllib.loads((daemon.conf_dir / "postbackd.toml").read_text())
    files["trigger"][0]["options"] = options
    return files


async def test_a_trigger_removed_while_its_file_is_retried_cancels_the_file(
    postbackd_daemon: Callable[..., PostbackdDaemon], tmp_path: Path
) -> None:
    share = tmp_path / "never-mounted"
    daemon = await batching_daemon(
        postbackd_daemon, "directory", {"path": str(share)}, retry_schedule=["1s"] * 30
    ).start()
    await at_window_start()
    await daemon.submit(*(event_payload(f"r-{n}", order=f"o-{n}") for n in range(2)))
    ids = [d["id"] for d in await daemon.deliveries()]
    await until_async(lambda: _has_attempt(daemon, ids[0]), 15, "a failed write")
    files = tomllib.loads((daemon.conf_dir / "postbackd.toml").read_text())
    files["trigger"] = []
    daemon.write("postbackd.toml", files)
    daemon.signal(signal.SIGHUP)
    cancelled = await daemon.wait_for_deliveries(2, states=["cancelled"], timeout=15)
    assert {d["id"] for d in cancelled} == set(ids)
    detail = await daemon.delivery(ids[0])
    assert "removed from the configuration" in detail["delivery"]["last_error"]
    share.mkdir()
    await asyncio.sleep(2.5)  # the file is not written: its trigger is gone
    assert list(share.iterdir()) == []
    assert (await daemon.get("/readyz"))[0] == 200
