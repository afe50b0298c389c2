"""The configuration watcher on a real directory: what reloads, what does not, and coalescing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import postbackd.config.watch as confwatch
from postbackd.config.watch import ConfigWatcher, relevant

QUIET = 1.0  # longer than DEBOUNCE with a margin: "no reload happened"


class Recorder:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.arrived = asyncio.Event()

    async def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.arrived.set()

    async def wait(self, count: int = 1, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.reasons) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"expected {count} reloads, got {self.reasons}"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                pass
        return self.reasons


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[tuple[Path, Recorder]]:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "daemon.toml").write_text("[daemon]\n")
    recorder = Recorder()
    watcher = ConfigWatcher(conf, recorder)
    watcher.start()
    await asyncio.sleep(0.1)  # the observer's inotify watches are in place
    try:
        yield conf, recorder
    finally:
        await watcher.stop()


def test_relevant_names(tmp_path):
    conf = tmp_path / "conf.d"
    assert relevant(str(conf / "acme.toml"), conf)
    assert relevant(str(conf / "customers" / "acme.toml"), conf)
    assert relevant(str(conf / "templates" / "acme.json.j2"), conf)  # body_file templates count
    for ignored in (".acme.toml.swp", "acme.toml~", "acme.toml.tmp", "x.swx", "x.part", ".git"):
        assert not relevant(str(conf / ignored), conf), ignored
    for sed_temporary in ("sedAb12Cd", "sed4xYz9q", "customers/sedQQQQQQ"):
        assert not relevant(str(conf / sed_temporary), conf), sed_temporary
    for kept in ("sedona.toml", "seda.toml", "sedAb12Cd/acme.toml", "sedAb12Cde"):
        assert relevant(str(conf / kept), conf), kept
    assert not relevant(str(conf / ".git" / "objects" / "ab"), conf)
    assert not relevant(str(conf), conf)
    assert not relevant(str(tmp_path / "elsewhere.toml"), conf)


async def test_editor_temporary_files_do_not_reload(watched):
    conf, recorder = watched
    (conf / ".acme.toml.swp").write_text("swap")
    (conf / "acme.toml~").write_text("backup")
    (conf / "acme.toml.tmp").write_text("partial")
    (conf / ".hidden").mkdir()
    (conf / ".hidden" / "x.toml").write_text("x = 1")
    os.unlink(conf / "acme.toml~")
    await asyncio.sleep(QUIET)
    assert recorder.reasons == []


async def test_sed_in_place_is_one_reload_named_by_the_file_edited(watched):
    """``sed -i`` writes ``sedXXXXXX`` beside the file and renames it over the file: the
    temporary name is never a reload reason."""
    conf, recorder = watched
    (conf / "daemon.toml").write_text("[daemon]\ngrace = '5s'\n")
    (first,) = await recorder.wait(1)
    assert first == "files changed: daemon.toml"
    subprocess.run(["sed", "-i", "s/5s/7s/", str(conf / "daemon.toml")], check=True, timeout=10)
    reasons = await recorder.wait(2)
    await asyncio.sleep(QUIET)
    assert recorder.reasons == [first, "files changed: daemon.toml"]
    assert "7s" in (conf / "daemon.toml").read_text()
    assert reasons[1] == "files changed: daemon.toml"


async def test_created_changed_moved_deleted_each_reload(watched):
    conf, recorder = watched
    (conf / "acme.toml").write_text("[[customer]]\n")
    (reason,) = await recorder.wait(1)
    assert reason == "files changed: acme.toml"
    (conf / "acme.toml").write_text("[[customer]]\nid = 'acme'\n")
    await recorder.wait(2)
    (conf / ".beta.toml.part").write_text("[[customer]]\n")
    os.rename(conf / ".beta.toml.part", conf / "beta.toml")  # write-then-rename
    reasons = await recorder.wait(3)
    assert reasons[2] == "files changed: beta.toml"
    os.unlink(conf / "acme.toml")
    reasons = await recorder.wait(4)
    assert reasons[3] == "files changed: acme.toml"
    await asyncio.sleep(QUIET)
    assert len(recorder.reasons) == 4


async def test_a_burst_is_one_reload(watched):
    conf, recorder = watched
    for index in range(30):
        (conf / f"customer-{index:02}.toml").write_text(f"# {index}\n")
    (reason,) = await recorder.wait(1)
    assert reason.startswith("files changed: customer-00.toml, customer-01.toml")
    assert reason.endswith("and 25 more")
    await asyncio.sleep(QUIET)
    assert len(recorder.reasons) == 1


async def test_continuous_changes_cannot_hold_reloads_off(watched, monkeypatch):
    conf, recorder = watched
    monkeypatch.setattr(confwatch, "MAX_DELAY", 0.6)
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # a change every 0.1 s, never quiet for DEBOUNCE
        (conf / "busy.toml").write_text(f"# {time.monotonic()}\n")
        await asyncio.sleep(0.1)
    assert len(recorder.reasons) >= 1, "no reload while the directory never settled"


async def test_a_file_still_being_written_is_not_read_until_closed(watched):
    conf, recorder = watched
    with (conf / "acme.toml").open("w") as handle:
        handle.write("[[customer]]\n")
        handle.flush()
        await asyncio.sleep(QUIET)  # past the debounce, but the writer still has it open
        assert recorder.reasons == []
        handle.write('id = "acme"\n')
    reasons = await recorder.wait(1)
    assert "acme.toml" in reasons[0]
