"""The operator's spool commands (`requests`, `queue`, `erase`) against a live daemon.

The daemon runs as a subprocess on a generated configuration and posts to a real receiver;
every command is a real `python -m postbackd` subprocess on the daemon's configuration
directory, working on the spool file while the daemon holds it.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from postbackd.events import parse_event
from postbackd.spool import open_spool
from postbackd.testing import PostbackdDaemon, free_port
from tests.configs import event, webhook_config
from tests.spool.helpers import new_delivery

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


async def cli(
    daemon: PostbackdDaemon, *args: str, stdin: str | None = None, tty_answer: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``postbackd ARGS -c <the daemon's conf dir>`` in a thread (the receiver keeps serving).

    Without `stdin` the command's stdin is not a terminal; with `tty_answer` it is one (a
    pseudo-terminal) on which that answer is typed.
    """
    command = [sys.executable, "-m", "postbackd", *args, "-c", str(daemon.conf_dir)]
    env = {**os.environ, "COLUMNS": "100"}
    if tty_answer is None:
        return await asyncio.to_thread(
            subprocess.run,
            command,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
    return await asyncio.to_thread(_run_on_tty, command, tty_answer, env)


def _run_on_tty(
    command: list[str], answer: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode())
        return subprocess.run(
            command, stdin=terminal, capture_output=True, text=True, timeout=30, env=env
        )
    finally:
        os.close(controller)
        os.close(terminal)


def json_lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def settled(daemon: PostbackdDaemon, count: int, *states: str, timeout: float = 10.0):
    """Poll the admin API until `count` deliveries are in `states`; return every delivery."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = await daemon.get("/v1/deliveries?limit=500")
        assert status == 200, body
        deliveries = body["deliveries"]
        if sum(d["state"] in states for d in deliveries) >= count:
            return deliveries
        if time.monotonic() > deadline:
            raise AssertionError(f"not {count} deliveries {states} within {timeout}s: {body}")
        await asyncio.sleep(0.1)


async def started(daemon_factory, receiver, tmp_path: Path, *, schedule: str | None = None):
    """A running daemon posting to `receiver`; `schedule` replaces the short retry schedule."""
    port = free_port()
    files = webhook_config(receiver.url("/hook"), port=port, spool=tmp_path / "spool.db")
    if schedule is not None:
        files["acme.toml"] = files["acme.toml"].replace(
            'retry_schedule = ["200ms", "200ms", "200ms"]', f"retry_schedule = {schedule}"
        )
    daemon = daemon_factory(receiver.url("/hook"), files=files)
    daemon.port = port
    daemon.launch()
    await daemon.wait_ready()
    return daemon


async def test_requests_lists_and_shows_the_four_stages(receiver, daemon_factory, tmp_path):
    receiver.respond("/hook", 500, 200)
    daemon = await started(daemon_factory, receiver, tmp_path)
    await daemon.post(event("evt-a", order="o-1"))
    await receiver.wait_for(2)
    await daemon.post(event("evt-b", "order.delivered", order="o-2"))
    await settled(daemon, 2, "done")

    table, listed, only, future, typed = await asyncio.gather(
        cli(daemon, "requests"),
        cli(daemon, "requests", "--json"),
        cli(daemon, "requests", "--order", "o-1", "--json"),
        cli(daemon, "requests", "--since", "2999-01-01T00:00", "--json"),
        cli(daemon, "requests", "--since", "1h", "--event-type", "order.delivered", "--json"),
    )
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "TIME", "ID", "CUSTOMER", "TRIGGER", "EVENT", "DESTINATION", "STATE", "TRY", "LAST"
    ]  # fmt: skip
    assert len(rows) == 2 and all(len(line) <= 100 for line in table.stdout.splitlines())
    assert "order.delivered" in rows[0] and "order.shipped" in rows[1]  # newest first
    assert all("acme-all" in row and "done" in row and "200" in row for row in rows)

    assert [d["event_id"] for d in json_lines(listed)] == ["evt-b", "evt-a"]
    first = json_lines(listed)[1]
    assert first["attempts"] == 2 and first["destination"] == f"http://127.0.0.1:{receiver.port}"
    assert first["id"][:8] in rows[1]
    assert [d["id"] for d in json_lines(only)] == [first["id"]]
    assert json_lines(future) == []
    assert [d["event_id"] for d in json_lines(typed)] == ["evt-b"]

    shown, by_prefix, as_json, unknown = await asyncio.gather(
        cli(daemon, "requests", "show", first["id"]),
        cli(daemon, "requests", "show", first["id"][:8]),
        cli(daemon, "requests", "show", first["id"], "--json"),
        cli(daemon, "requests", "show", UNKNOWN_ID),
    )
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    for stage in ("EVENT", "TEMPLATE (json, application/json)", "ATTEMPT 1 of 2", "ATTEMPT 2 of 2"):
        assert stage in text
    assert '"id": "evt-a"' in text and '"orderId": "o-1"' in text  # the event
    assert text.count(f"POST {receiver.url('/hook')}") == 2  # the requests
    assert "webhook-signature: ***" in text and "whsec_" not in text
    assert "500 Internal Server Error" in text and "200 OK" in text  # the responses
    assert "latency:" in text and "failed (scripted)" in text

    assert by_prefix.returncode == 0 and by_prefix.stdout == text
    detail = json.loads(as_json.stdout)
    assert detail["delivery"]["id"] == first["id"]
    assert [a["status"] for a in detail["attempts"]] == [500, 200]
    assert json.loads(detail["template"]["body"])["orderId"] == "o-1"
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert f"no delivery {UNKNOWN_ID}" in unknown.stderr


async def test_dead_deliveries_replayed_from_stdin_keep_their_attempt_numbers(
    receiver, daemon_factory, tmp_path
):
    receiver.respond("/hook", 500)
    daemon = await started(daemon_factory, receiver, tmp_path)
    await daemon.post([event("evt-d1", order="o-1"), event("evt-d2", order="o-2")])
    await settled(daemon, 2, "dead")
    receiver.respond("/hook", 200)
    before = len(receiver.requests)

    dead = json_lines(await cli(daemon, "queue", "list", "--state", "dead", "--json"))
    assert len(dead) == 2 and all(d["attempts"] == 4 for d in dead)
    ids = "".join(f"{d['id']}\n\n" for d in dead)  # as `jq -r .id` would print them
    retried = await cli(daemon, "queue", "retry", "-", stdin=ids)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout == "retried 2 deliveries\n"
    # the daemon's dispatcher looks at the spool every second
    await receiver.wait_for(before + 2, timeout=3)
    deliveries = await settled(daemon, 2, "done", timeout=5)
    assert {d["id"] for d in deliveries} == {d["id"] for d in dead}

    listed, again, nothing, none_piped = await asyncio.gather(
        cli(daemon, "queue", "list", "--state", "done", "--json"),
        cli(daemon, "queue", "retry", UNKNOWN_ID),
        cli(daemon, "queue", "retry"),
        cli(daemon, "queue", "retry", "-", stdin="\n"),
    )
    done = json_lines(listed)
    # A fresh schedule, not a fresh history: attempts keep counting across the retry.
    assert len(done) == 2 and all(d["attempts"] == 5 for d in done), done
    shown = await cli(daemon, "requests", "show", done[0]["id"], "--json")
    numbers = [a["number"] for a in json.loads(shown.stdout)["attempts"]]
    assert numbers == [1, 2, 3, 4, 5]
    plain = (await cli(daemon, "queue", "show", done[0]["id"])).stdout
    assert "ATTEMPT 5 of 5" in plain and "ATTEMPT 1 of 5" in plain, plain
    logged = [
        json.loads(line) for line in daemon.logs().splitlines() if '"delivery attempt"' in line
    ]
    assert sorted(e["attempt"] for e in logged if e["delivery_id"] == done[0]["id"]) == numbers
    assert again.returncode == 1 and again.stdout == "retried 0 deliveries\n"
    assert nothing.returncode == 2 and "say which deliveries" in nothing.stderr
    assert (none_piped.returncode, none_piped.stdout) == (0, "retried 0 deliveries\n")


async def test_hold_release_and_retry_by_destination(receiver, daemon_factory, tmp_path):
    receiver.respond("/hook", 500)
    daemon = await started(daemon_factory, receiver, tmp_path, schedule='["30s", "30s"]')
    await daemon.post(event("evt-h", order="o-1"))
    await receiver.wait_for(1)
    await settled(daemon, 1, "pending")

    held = await cli(daemon, "queue", "hold", "--customer", "acme")
    assert (held.returncode, held.stdout) == (0, "held 1 delivery\n")
    listed, table, again = await asyncio.gather(
        cli(daemon, "queue", "list", "--state", "held", "--json"),
        cli(daemon, "queue", "list"),
        cli(daemon, "queue", "hold", "--customer", "acme"),
    )
    (row,) = json_lines(listed)
    assert row["held_reason"] == "held by operator"
    assert " held " in table.stdout and "[held by" in table.stdout
    assert (again.returncode, again.stdout) == (0, "held 0 deliveries\n")

    receiver.respond("/hook", 200)
    released = await cli(daemon, "queue", "release", "--customer", "acme")
    assert (released.returncode, released.stdout) == (0, "released 1 delivery\n")
    await receiver.wait_for(2, timeout=3)
    await settled(daemon, 1, "done", timeout=5)

    receiver.respond("/hook", 500)
    await daemon.post(event("evt-h2", order="o-2"))
    await receiver.wait_for(3)
    await settled(daemon, 1, "pending")
    receiver.respond("/hook", 200)
    elsewhere = await cli(daemon, "queue", "retry", "--destination", "other.example")
    assert (elsewhere.returncode, elsewhere.stdout) == (0, "retried 0 deliveries\n")
    assert "127.0.0.1" in elsewhere.stderr  # names the destinations there are
    retried = await cli(daemon, "queue", "retry", "--destination", "127.0.0.1")
    assert (retried.returncode, retried.stdout) == (0, "retried 1 delivery\n")
    await receiver.wait_for(4, timeout=3)
    await settled(daemon, 2, "done", timeout=5)


async def test_stats_and_purge(receiver, daemon_factory, tmp_path):
    receiver.respond("/hook", 500)
    daemon = await started(daemon_factory, receiver, tmp_path, schedule='["30s"]')
    await daemon.post([event(f"evt-p{n}", order=f"o-{n}") for n in range(3)])
    deliveries = await settled(daemon, 3, "pending")

    as_json, as_text, refused, declined = await asyncio.gather(
        cli(daemon, "queue", "stats", "--json"),
        cli(daemon, "queue", "stats"),
        cli(daemon, "queue", "purge", "--customer", "acme"),
        cli(daemon, "queue", "purge", "--customer", "acme", tty_answer="n\n"),
    )
    stats = json.loads(as_json.stdout)
    assert stats["by_state"]["pending"] == 3 and stats["deliveries"] == 3
    assert stats["events"] == 3 and stats["unmatched_events"] == 0
    assert stats["oldest_pending_age"] >= 0
    assert any(line.split() == ["pending", "3"] for line in as_text.stdout.splitlines())
    assert refused.returncode == 2 and "--yes" in refused.stderr and refused.stdout == ""
    assert declined.returncode == 1 and "Delete 3 deliveries" in declined.stderr
    one = deliveries[0]["id"]
    purged = await cli(daemon, "queue", "purge", one, "--yes")
    assert (purged.returncode, purged.stdout) == (0, "purged 1 delivery\n")
    asked = await cli(daemon, "queue", "purge", "--state", "pending", tty_answer="y\n")
    assert (asked.returncode, asked.stdout) == (0, "purged 2 deliveries\n")
    assert "Delete 2 deliveries and their request log? [y/N]" in asked.stderr

    stats = json.loads((await cli(daemon, "queue", "stats", "--json")).stdout)
    assert stats["deliveries"] == 0 and stats["events"] == 3
    gone = await cli(daemon, "queue", "purge", one, "--yes")
    assert gone.returncode == 1 and "none of them is in the spool" in gone.stderr


ERASED_ORDER = "ORD-ERASE-7F3A9C"
KEPT_ORDER = "ORD-KEEP-51D0E2"


def raw_spool_copies(spool: Path, needle: str) -> dict[str, int]:
    """How often `needle` occurs in the raw bytes of the spool file, its -wal and its -shm."""
    found = {}
    for suffix in ("", "-wal", "-shm"):
        path = spool.with_name(spool.name + suffix)
        data = path.read_bytes() if path.exists() else b""
        found[path.name] = data.count(needle.encode())
    return found


async def test_erase_order_while_the_daemon_runs_leaves_no_byte_of_it(
    receiver, daemon_factory, tmp_path
):
    daemon = await started(daemon_factory, receiver, tmp_path)
    spool = tmp_path / "spool.db"
    await daemon.post(
        [
            event("evt-e1", order=ERASED_ORDER),
            event("evt-e2", "order.delivered", order=ERASED_ORDER),
            event("evt-e3", order=KEPT_ORDER),
        ]
    )
    await settled(daemon, 3, "done")
    assert sum(raw_spool_copies(spool, ERASED_ORDER).values()) > 0  # the test can see it

    refused = await cli(daemon, "erase", "--order", ERASED_ORDER)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    erased = await cli(daemon, "erase", "--order", ERASED_ORDER, "--yes")
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout == (
        f"erased order {ERASED_ORDER}: 2 events, 2 deliveries, 2 request log entries\n"
    )
    # Once the command has returned, and while the daemon still holds the spool open:
    assert raw_spool_copies(spool, ERASED_ORDER) == {
        "spool.db": 0,
        "spool.db-wal": 0,
        "spool.db-shm": 0,
    }
    assert raw_spool_copies(spool, KEPT_ORDER)["spool.db"] > 0  # only that order went
    of_order, remaining = await asyncio.gather(
        cli(daemon, "requests", "--order", ERASED_ORDER, "--json"),
        cli(daemon, "requests", "--json"),
    )
    assert json_lines(of_order) == []
    (left,) = json_lines(remaining)
    assert left["order_id"] == KEPT_ORDER

    await daemon.post(event("evt-e4", order="o-3"))  # the daemon goes on
    await settled(daemon, 2, "done")
    daemon.stop()
    assert sum(raw_spool_copies(spool, ERASED_ORDER).values()) == 0


async def test_erase_order_with_the_daemon_stopped_leaves_no_byte_of_it(
    receiver, daemon_factory, tmp_path
):
    daemon = await started(daemon_factory, receiver, tmp_path)
    spool = tmp_path / "spool.db"
    await daemon.post([event("evt-s1", order=ERASED_ORDER), event("evt-s2", order=KEPT_ORDER)])
    await settled(daemon, 2, "done")
    daemon.stop()
    erased = await cli(daemon, "erase", "--order", ERASED_ORDER, "--yes")
    assert erased.returncode == 0, erased.stderr
    assert sum(raw_spool_copies(spool, ERASED_ORDER).values()) == 0, raw_spool_copies(
        spool, ERASED_ORDER
    )
    assert raw_spool_copies(spool, KEPT_ORDER)["spool.db"] > 0


async def test_missing_spool_is_reported_not_created(tmp_path):
    spool = tmp_path / "var" / "spool.db"
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "daemon.toml").write_text(f'[daemon]\nspool = "{spool}"\n')
    daemon = PostbackdDaemon(conf, port=0)
    configured, direct = await asyncio.gather(
        cli(daemon, "queue", "stats"),
        cli(daemon, "requests", "--spool", str(tmp_path / "other.db")),
    )
    assert configured.returncode == 1
    assert f"spool {spool} not found" in configured.stderr and "--spool" in configured.stderr
    assert direct.returncode == 1 and "not found" in direct.stderr
    assert not spool.exists() and not (tmp_path / "other.db").exists()


async def test_read_only_commands_work_while_a_configuration_file_is_broken(tmp_path):
    """`requests` and `queue list/show/stats` find the spool in the files that can be read and
    warn about the broken one; a command that changes the spool still refuses."""
    spool_path = tmp_path / "var" / "spool.db"
    spool = await open_spool(spool_path)
    try:
        await spool.submit(
            parse_event(event("evt-broken")),
            [new_delivery("3c3f544b-0000-5000-8000-000000000001")],
            source="test",
        )
    finally:
        await spool.close()
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "daemon.toml").write_text('[daemon]\nspool = "../var/spool.db"\n')
    (conf / "broken.toml").write_text("[[customer]\nid = 'x'\n")
    daemon = PostbackdDaemon(conf, port=0)
    listed, shown, stats, queued, retry = await asyncio.gather(
        cli(daemon, "requests", "--json"),
        cli(daemon, "requests", "show", "3c3f544b"),
        cli(daemon, "queue", "stats", "--json"),
        cli(daemon, "queue", "list"),
        cli(daemon, "queue", "retry", "--all"),
    )
    for result in (listed, shown, stats, queued):
        assert result.returncode == 0, result.stderr
        assert f"{conf / 'broken.toml'}:1:" in result.stderr
        assert f"reading the spool {spool_path.resolve()} all the same" in result.stderr
    assert [d["event_id"] for d in json_lines(listed)] == ["evt-broken"]
    assert json.loads(stats.stdout)["events"] == 1
    assert retry.returncode == 1 and "cannot find the spool" in retry.stderr

    # the [daemon] table itself unreadable: the default spool, and a hint at --spool
    (conf / "daemon.toml").write_text('[daemon\nspool = "../var/spool.db"\n')
    elsewhere = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "postbackd", "queue", "stats", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"},
    )
    assert elsewhere.returncode == 0, elsewhere.stderr  # ./var/spool.db is the default
    assert "no [daemon] spool in the files that can be read" in elsewhere.stderr
    assert "--spool PATH" in elsewhere.stderr
