"""The file-drop source against real files written by real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from postbackd.sources.filedrop.source import SUBMIT_BATCH, FileDropSource
from tests.sources.source_collector import Collector, eventually

MakeSource = Callable[..., FileDropSource]


def event(index: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"evt-{index}",
        "type": "order.shipped",
        "customer": "acme",
        "data": {"orderId": f"order-{index}"},
        **extra,
    }


def jsonl(*items: dict[str, Any] | str) -> str:
    return "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items)


@pytest.fixture
def incoming(tmp_path: Path) -> Path:
    return tmp_path / "incoming"


@pytest.fixture
async def make_source(incoming: Path) -> AsyncIterator[MakeSource]:
    sources: list[FileDropSource] = []

    def make(**settings: Any) -> FileDropSource:
        source = FileDropSource({"directory": str(incoming), **settings})
        sources.append(source)
        return source

    yield make
    for source in sources:
        await source.stop()


async def running(make_source: MakeSource, collector: Collector, **settings: Any) -> FileDropSource:
    source = make_source(**settings)
    await source.start(collector)
    assert source.ready
    return source


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def write_then_rename(directory: Path, name: str, content: str) -> None:
    """Another process writes a hidden temporary file, then renames it in."""
    script = (
        "import os, sys, pathlib\n"
        "d = pathlib.Path(sys.argv[1]); tmp = d / ('.' + sys.argv[2] + '.tmp')\n"
        "tmp.write_text(sys.stdin.read())\n"
        "os.rename(tmp, d / sys.argv[2])\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(directory), name],
        input=content,
        text=True,
        check=True,
        timeout=30,
    )


async def test_a_file_written_then_renamed_by_another_process_is_submitted(
    make_source: MakeSource, incoming: Path
) -> None:
    collector = Collector()
    await running(make_source, collector)

    write_then_rename(incoming, "batch.jsonl", jsonl(event(1), event(2), event(3)))

    await collector.wait_count(3, timeout=10)
    await eventually(lambda: listing(incoming / "processed") == ["batch.jsonl"], timeout=10)
    assert listing(incoming) == ["processed", "rejected"]
    assert [collector.events[f"evt-{i}"].data["orderId"] for i in (1, 2, 3)] == [
        "order-1",
        "order-2",
        "order-3",
    ]


async def test_a_plain_cp_is_read_when_the_copy_is_closed(
    make_source: MakeSource, incoming: Path, tmp_path: Path
) -> None:
    collector = Collector()
    await running(make_source, collector)
    source_file = tmp_path / "orders.json"
    source_file.write_text(json.dumps([event(i) for i in range(50)]))

    began = time.monotonic()
    subprocess.run(["cp", str(source_file), str(incoming)], check=True, timeout=30)

    await collector.wait_count(50, timeout=10)
    assert time.monotonic() - began < 1.5, "read on close, not only after the settle fallback"
    await eventually(lambda: listing(incoming / "processed") == ["orders.json"], timeout=10)


async def test_a_slow_writer_is_read_only_once_it_closes_the_file(
    make_source: MakeSource, incoming: Path
) -> None:
    collector = Collector()
    await running(make_source, collector)
    script = (
        "import sys, time\n"
        "with open(sys.argv[1], 'w') as f:\n"
        "    f.write('[' + sys.argv[2] + ','); f.flush(); time.sleep(1.0)\n"
        "    f.write(sys.argv[3] + ']')\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(incoming / "slow.json"),
            json.dumps(event(1)),
            json.dumps(event(2)),
        ],
        check=True,
        timeout=30,
    )

    await collector.wait_count(2, timeout=10)
    await eventually(lambda: listing(incoming / "processed") == ["slow.json"], timeout=10)
    assert listing(incoming / "rejected") == []


async def test_malformed_json_is_rejected_with_an_error_file(
    make_source: MakeSource, incoming: Path
) -> None:
    collector = Collector()
    await running(make_source, collector)

    write_then_rename(incoming, "broken.json", '{"id": "evt-1", "type": ')

    rejected = incoming / "rejected"
    await eventually(lambda: listing(rejected) == ["broken.json", "broken.json.error"], timeout=10)
    error = (rejected / "broken.json.error").read_text()
    assert "malformed JSON" in error
    assert "nothing in it was accepted" in error
    assert (rejected / "broken.json").read_text() == '{"id": "evt-1", "type": '
    assert collector.submits == 0


async def test_one_bad_event_rejects_a_whole_json_array(
    make_source: MakeSource, incoming: Path
) -> None:
    collector = Collector()
    await running(make_source, collector)
    items = [event(0), event(1), event(2), {"id": "evt-3", "customer": "acme", "data": {}}]

    write_then_rename(incoming, "orders.json", json.dumps(items))

    rejected = incoming / "rejected"
    await eventually(lambda: "orders.json.error" in listing(rejected), timeout=10)
    error = (rejected / "orders.json.error").read_text()
    assert "[3].type: required: a non-empty string" in error
    assert "all-or-nothing" in error
    assert collector.submits == 0
    assert listing(incoming / "processed") == []


async def test_a_half_bad_jsonl_accepts_the_good_lines_and_rejects_the_bad_ones(
    make_source: MakeSource, incoming: Path
) -> None:
    collector = Collector()
    await running(make_source, collector)
    missing_type = json.dumps({"id": "evt-x", "customer": "acme", "data": {}})
    content = jsonl(event(1), event(2), "", "{nope", event(5), missing_type)

    write_then_rename(incoming, "day.jsonl", content)

    rejected = incoming / "rejected"
    await eventually(lambda: listing(incoming / "processed") == ["day.jsonl"], timeout=10)
    assert collector.ids == {"evt-1", "evt-2", "evt-5"}
    assert listing(rejected) == ["day.jsonl", "day.jsonl.error"]
    assert (rejected / "day.jsonl").read_text() == "{nope\n" + missing_type + "\n"
    error_lines = (rejected / "day.jsonl.error").read_text().splitlines()
    assert error_lines[-1] == "line 6: type: required: a non-empty string"
    assert error_lines[-2].startswith("line 4: malformed JSON")
    assert "the other 3 event(s) were accepted" in error_lines[0]
    assert (incoming / "processed" / "day.jsonl").read_text() == content


async def test_files_present_before_start_are_picked_up(
    make_source: MakeSource, incoming: Path
) -> None:
    incoming.mkdir()
    (incoming / "a.json").write_text(json.dumps(event(1)))
    (incoming / "b.jsonl").write_text(jsonl(event(2), event(3)))
    an_hour_ago = time.time() - 3600
    for name in ("a.json", "b.jsonl"):
        os.utime(incoming / name, (an_hour_ago, an_hour_ago))
    (incoming / "fresh.json").write_text(json.dumps(event(4)))
    collector = Collector()

    await running(make_source, collector)

    await collector.wait_count(3, timeout=5)
    await collector.wait_count(4, timeout=10)
    await eventually(
        lambda: listing(incoming / "processed") == ["a.json", "b.jsonl", "fresh.json"], timeout=10
    )


async def test_temporary_and_hidden_names_wait_until_renamed(
    make_source: MakeSource, incoming: Path
) -> None:
    collector = Collector()
    await running(make_source, collector)
    for name in (".hidden.json", "upload.json.part", "export.jsonl.tmp"):
        (incoming / name).write_text(json.dumps(event(1)))
    (incoming / "notes.txt").write_text("not an event file")

    (incoming / "marker.json").write_text(json.dumps(event(2)))
    await collector.wait_count(1, timeout=10)
    assert collector.ids == {"evt-2"}
    os.rename(incoming / "upload.json.part", incoming / "upload.json")
    await collector.wait_count(2, timeout=10)
    await eventually(lambda: "upload.json" in listing(incoming / "processed"), timeout=10)
    assert listing(incoming) == [
        ".hidden.json",
        "export.jsonl.tmp",
        "notes.txt",
        "processed",
        "rejected",
    ]


async def test_keep_processed_zero_deletes_accepted_files(
    make_source: MakeSource, incoming: Path
) -> None:
    collector = Collector()
    await running(make_source, collector, keep_processed="0s")

    write_then_rename(incoming, "gone.json", json.dumps(event(1)))

    await collector.wait_count(1, timeout=10)
    await eventually(lambda: listing(incoming) == ["processed", "rejected"], timeout=10)
    assert listing(incoming / "processed") == []


async def test_old_processed_files_are_swept(make_source: MakeSource, incoming: Path) -> None:
    processed = incoming / "processed"
    processed.mkdir(parents=True)
    (processed / "old.json").write_text("{}")
    (processed / "recent.json").write_text("{}")
    eight_days_ago = time.time() - 8 * 86400
    os.utime(processed / "old.json", (eight_days_ago, eight_days_ago))

    await running(make_source, Collector())

    await eventually(lambda: listing(processed) == ["recent.json"], timeout=5)


async def test_spool_unavailable_keeps_the_file_and_retries_it(
    make_source: MakeSource, incoming: Path
) -> None:
    collector = Collector()
    collector.unavailable_for(2)
    await running(make_source, collector)

    write_then_rename(incoming, "later.json", json.dumps(event(1)))

    await collector.wait_for(lambda: collector.unavailable_calls == 1, timeout=10)
    assert (incoming / "later.json").exists()
    await collector.wait_count(1, timeout=15)
    assert collector.unavailable_calls == 2
    await eventually(lambda: listing(incoming / "processed") == ["later.json"], timeout=10)


async def test_the_same_name_dropped_again_is_kept_apart_and_is_a_duplicate(
    make_source: MakeSource, incoming: Path
) -> None:
    collector = Collector()
    await running(make_source, collector)

    write_then_rename(incoming, "again.json", json.dumps(event(1)))
    await eventually(lambda: listing(incoming / "processed") == ["again.json"], timeout=10)
    write_then_rename(incoming, "again.json", json.dumps(event(1)))
    await eventually(lambda: len(listing(incoming / "processed")) == 2, timeout=10)

    assert collector.submits == 2
    assert collector.ids == {"evt-1"}
    other = next(n for n in listing(incoming / "processed") if n != "again.json")
    assert other.startswith("again.") and other.endswith(".json")


async def test_an_event_the_spool_refuses_rejects_a_json_file(
    make_source: MakeSource, incoming: Path
) -> None:
    collector = Collector()
    collector.reject_ids = {"evt-2"}
    await running(make_source, collector)

    write_then_rename(incoming, "refused.json", json.dumps([event(1), event(2)]))

    rejected = incoming / "rejected"
    await eventually(lambda: "refused.json.error" in listing(rejected), timeout=10)
    error = (rejected / "refused.json.error").read_text()
    assert "[1] (id evt-2): id: rejected by the test collector" in error
    assert "the 1 event(s) before it were accepted" in error


async def test_a_long_jsonl_is_committed_in_batches_and_a_refused_line_only_fails_itself(
    make_source: MakeSource, incoming: Path
) -> None:
    collector = Collector()
    collector.reject_ids = {"evt-700"}
    await running(make_source, collector)
    count = SUBMIT_BATCH * 2 + 200

    write_then_rename(incoming, "big.jsonl", jsonl(*(event(i) for i in range(count))))

    await eventually(lambda: listing(incoming / "processed") == ["big.jsonl"], timeout=20)
    assert collector.ids == {f"evt-{i}" for i in range(count)} - {"evt-700"}
    # three batches, the second refused as a whole and then submitted event by event
    assert (collector.batches, collector.calls) == (3, SUBMIT_BATCH)
    error = (incoming / "rejected" / "big.jsonl.error").read_text()
    assert "line 701: id: rejected by the test collector" in error


def test_settings_name_each_problem() -> None:
    with pytest.raises(ValueError) as bad:
        FileDropSource({"keep_processed": "a week", "dir": "/x"})
    assert str(bad.value).splitlines() == [
        '[sources.filedrop] dir: unknown key "dir" '
        "(known: directory, keep_processed, max_file_size)",
        '[sources.filedrop]: missing required key "directory": the directory to watch for '
        "event files",
        "[sources.filedrop] keep_processed: invalid duration 'a week': use a number with a "
        'unit (ms, s, m, h, d, w), e.g. "30s", "5m", "1h30m"',
    ]
    settings = FileDropSource({"directory": "/srv/in", "keep_processed": "0s"}).settings
    assert (settings.directory, settings.keep_processed) == (Path("/srv/in"), 0.0)


async def test_a_source_can_be_stopped_and_started_again(
    make_source: MakeSource, incoming: Path
) -> None:
    collector = Collector()
    source = await running(make_source, collector)
    await source.stop()
    assert not source.ready
    write_then_rename(incoming, "while-stopped.json", json.dumps(event(1)))

    await source.start(collector)

    assert source.ready
    await collector.wait_count(1, timeout=10)
    await eventually(lambda: listing(incoming / "processed") == ["while-stopped.json"], timeout=10)


async def test_a_read_that_hangs_is_reported_and_does_not_hold_up_stop(
    make_source: MakeSource, incoming: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read stuck in the kernel (a hung network file system) cannot be made on demand, so the
    source's reader is swapped for one that blocks until released: /readyz must say which file
    hangs, and stop() must return at once, leaving the blocked thread behind."""
    import threading

    from postbackd.sources.filedrop import source as filedrop

    release = threading.Event()
    source = await running(make_source, Collector())

    def hanging_read(path: Path, max_bytes: int) -> Any:
        release.wait(30)
        return None

    source.read_file = hanging_read
    monkeypatch.setattr(filedrop, "READ_STUCK_SECONDS", 0.2)
    (incoming / "slow.json").write_text(json.dumps(event(1)))
    await eventually(lambda: not source.ready, what="the source to report the hung read")
    assert source.problem is not None and "slow.json" in source.problem
    started = time.monotonic()
    await source.stop()
    assert time.monotonic() - started < 2.0
    release.set()
