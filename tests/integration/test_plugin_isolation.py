"""Misbehaving plugins in a real daemon: each gets the documented, clear outcome.

The daemon runs as a subprocess (`postbackd_daemon` from `postbackd.testing`) with the plugin
in its ``[daemon] plugin_dirs``; peers are real (`webhook_receiver`). At start-up a broken
plugin stops the daemon with its name and file (and `postbackd check` says the same); at run
time a plugin that raises or hangs costs one attempt, and a source that crashes is restarted —
the daemon goes on.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from postbackd.testing import event_payload

RAISES_AT_IMPORT = """\
import os

raise RuntimeError("licence server unreachable")
"""

RAISES_AT_REGISTRATION = """\
from postbackd.plugin import hookimpl

@hookimpl
def postbackd_register_deliveries(register):
    raise KeyError("ERP_URL")
"""

MISSPELLED_HOOK = """\
from postbackd.plugin import hookimpl

@hookimpl
def postbackd_register_delivery(register):
    pass
"""

REGISTERS_FILE = """\
from postbackd.plugin import hookimpl

class Writer:
    def __init__(self, settings): pass
    def validate_options(self, options): return []

@hookimpl
def postbackd_register_deliveries(register):
    register("file", Writer)
"""

FLAKY = """\
from postbackd.plugin import Outcome, hookimpl

class Flaky:
    \"\"\"Raises on the first two attempts (or always): a plugin bug at run time.\"\"\"

    def __init__(self, settings): pass
    def validate_options(self, options): return []

    async def deliver(self, delivery, options):
        if options.get("always") or delivery.attempt <= 2:
            raise RuntimeError(f"printer API exploded on attempt {delivery.attempt}")
        return Outcome.ok(detail="third time lucky")

    async def close(self): pass

@hookimpl
def postbackd_register_deliveries(register):
    register("flaky", Flaky)
"""

HANGS = """\
import asyncio

from postbackd.plugin import Outcome, hookimpl, parse_duration

class Hangs:
    \"\"\"Takes a timeout option, then hangs on attempt 1 anyway: a peer that never answers.\"\"\"

    def __init__(self, settings): pass

    def validate_options(self, options):
        try:
            parse_duration(options["timeout"])
        except (KeyError, ValueError) as exc:
            return [f"options.timeout: {exc}"]
        return []

    async def deliver(self, delivery, options):
        if delivery.attempt == 1:
            await asyncio.sleep(3600)
        return Outcome.ok()

    async def close(self): pass

@hookimpl
def postbackd_register_deliveries(register):
    register("hangs", Hangs)
"""

CRASHY_SOURCE = """\
import asyncio
from pathlib import Path

from postbackd.plugin import hookimpl, parse_event

EVENT = {"id": "evt-crashy", "type": "order.shipped", "customer": "acme",
         "data": {"orderId": "o-crashy"}}

class Crashy:
    \"\"\"1st start raises; 2nd start's task dies after 0.2 s; 3rd runs and submits one event.\"\"\"

    def __init__(self, settings):
        self.counter = Path(settings["counter_file"])
        self.task = None

    def count(self):
        starts = int(self.counter.read_text()) + 1 if self.counter.exists() else 1
        self.counter.write_text(str(starts))
        return starts

    async def start(self, submit):
        starts = await asyncio.to_thread(self.count)
        if starts == 1:
            raise ConnectionError("MIS login failed")
        self.task = asyncio.create_task(self.run(submit, starts))
        return self.task

    async def run(self, submit, starts):
        if starts == 2:
            await asyncio.sleep(0.2)
            raise RuntimeError("poller bug: KeyError 'status'")
        await submit(parse_event(EVENT))
        await asyncio.Event().wait()

    async def stop(self):
        if self.task is not None:
            self.task.cancel()

@hookimpl
def postbackd_register_sources(register):
    register("crashy", Crashy)
"""


def webhook_trigger(receiver, name: str = "acme-webhook") -> dict:
    return {"name": name, "delivery": "webhook", "options": {"url": receiver.url("/hook")}}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"broken.py": RAISES_AT_IMPORT},
            r"plugin 'broken' \(file (?P<dir>\S+)/broken.py\) failed to import: RuntimeError: "
            r"licence server unreachable \(at (?P=dir)/broken.py:3\)",
        ),
        (
            {"angry.py": RAISES_AT_REGISTRATION},
            r"plugin 'angry' \(file \S+/angry.py\) raised in postbackd_register_deliveries: "
            r"KeyError: 'ERP_URL' \(at \S+/angry.py:5\)",
        ),
        (
            {"typo.py": MISSPELLED_HOOK},
            r"plugin 'typo' \(file \S+/typo.py\): postbackd_register_delivery is not a postbackd "
            r"hook — did you mean postbackd_register_deliveries\?",
        ),
        (
            {"files_a.py": REGISTERS_FILE, "files_b.py": REGISTERS_FILE},
            r"delivery name 'file' is registered by two plugins: 'files_a' \(file \S+/files_a.py\) "
            r"and 'files_b' \(file \S+/files_b.py\)",
        ),
    ],
    ids=["raises-at-import", "raises-at-registration", "misspelled-hook", "duplicate-name"],
)
async def test_a_broken_plugin_stops_start_up_and_check_names_it(
    postbackd_daemon, webhook_receiver, files, expected
):
    daemon = postbackd_daemon(plugins=files, triggers=[webhook_trigger(webhook_receiver)])
    daemon.launch()
    assert await daemon.wait_exit() == 1
    assert re.search(expected, daemon.logs()), daemon.logs()
    assert "Traceback" not in daemon.logs()
    check = daemon.command("check")
    assert check.returncode == 1
    assert re.search(expected, check.stdout), check.stdout + check.stderr


async def test_disabling_the_broken_plugin_gives_a_clean_start(postbackd_daemon, webhook_receiver):
    daemon = postbackd_daemon(
        plugins={"broken.py": RAISES_AT_IMPORT},
        triggers=[webhook_trigger(webhook_receiver)],
        env={"POSTBACKD_DISABLE_PLUGINS": "broken"},
    )
    await daemon.start()
    await daemon.submit(event_payload("evt-clean"))
    await webhook_receiver.wait_for(1, path="/hook")


async def test_a_raising_deliver_costs_attempts_not_the_daemon(postbackd_daemon, webhook_receiver):
    daemon = postbackd_daemon(
        plugins={"flaky.py": FLAKY},
        triggers=[
            {"name": "erp-flaky", "delivery": "flaky", "options": {}},
            {"name": "erp-broken", "delivery": "flaky", "options": {"always": True}},
            webhook_trigger(webhook_receiver),
        ],
    )
    await daemon.start()
    await daemon.submit(event_payload("evt-flaky"))
    await webhook_receiver.wait_for(1, path="/hook")
    finished = {d["trigger"]: d for d in await daemon.wait_for_deliveries(3)}
    assert finished["acme-webhook"]["state"] == "done"
    assert finished["erp-flaky"]["state"] == "done"
    assert finished["erp-flaky"]["attempts"] == 3
    flaky = await daemon.delivery(finished["erp-flaky"]["id"])
    assert [a["error"] for a in flaky["attempts"][:2]] == [
        f"plugin 'flaky' raised RuntimeError: printer API exploded on attempt {n}" for n in (1, 2)
    ]
    assert finished["erp-broken"]["state"] == "dead"
    assert finished["erp-broken"]["attempts"] == 4  # the schedule of three retries, then dead
    broken = await daemon.delivery(finished["erp-broken"]["id"])
    assert "printer API exploded on attempt 4" in broken["attempts"][-1]["error"]
    assert '"delivery plugin raised"' in daemon.logs()
    status, _ = await daemon.request("GET", "/healthz")
    assert status == 200


async def test_a_hung_deliver_is_cut_by_the_attempt_timeout(postbackd_daemon, webhook_receiver):
    daemon = postbackd_daemon(
        plugins={"hangs.py": HANGS},
        triggers=[
            {"name": "erp-hangs", "delivery": "hangs", "options": {"timeout": "1s"}},
            webhook_trigger(webhook_receiver),
        ],
    )
    await daemon.start()
    submitted = time.monotonic()
    await daemon.submit(event_payload("evt-hang"))
    await webhook_receiver.wait_for(1, path="/hook", timeout=3)  # the others go on meanwhile
    (hung,) = await daemon.wait_for_deliveries(1, trigger="erp-hangs", timeout=20)
    assert hung["state"] == "done"
    assert time.monotonic() - submitted >= 6  # timeout 1s + the 5s margin
    detail = await daemon.delivery(hung["id"])
    first, second = detail["attempts"]
    assert first["error"] == "delivery plugin 'hangs' did not finish within 6s"
    assert 5.5 <= first["duration"] <= 8
    assert second["outcome"] == "ok"


async def test_a_crashing_source_is_restarted_and_reported(
    postbackd_daemon, webhook_receiver, tmp_path
):
    daemon = postbackd_daemon(
        plugins={"crashy.py": CRASHY_SOURCE},
        sources={"crashy": {"counter_file": str(tmp_path / "starts")}},
        triggers=[webhook_trigger(webhook_receiver)],
    )
    daemon.launch()
    seen: list[tuple[int, object]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (seen and seen[-1][0] == 200):
        assert daemon.exit_code() is None, daemon.logs()
        try:
            seen.append(await daemon.request("GET", "/readyz"))
        except OSError:
            pass
        await asyncio.sleep(0.05)
    assert seen[-1][0] == 200, daemon.logs()
    assert any(status == 503 and body["sources"]["crashy"] is False for status, body in seen)
    (request,) = await webhook_receiver.wait_for(1, path="/hook")
    assert request.json()["orderId"] == "o-crashy"
    metrics = await daemon.metrics()
    assert 'postbackd_source_restarts_total{source="crashy"} 2.0' in metrics
    assert 'postbackd_source_ready{source="crashy"} 1.0' in metrics
    logs = daemon.logs()
    assert "source failed to start; retrying" in logs and "MIS login failed" in logs
    assert "source crashed; restarting" in logs and "poller bug" in logs
