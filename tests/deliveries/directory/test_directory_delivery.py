"""The directory delivery on a real file system: temporary name, fsync, rename; a file sent
again replaces itself; a symlink in the way is replaced, never followed; every refusal says
what to do."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from postbackd.config import Location, Trigger
from postbackd.deliveries.directory import DirectoryDelivery
from postbackd.plugin import Delivery, OutcomeKind
from postbackd.testing import make_delivery

FILE = b"orderId,status\no-1,shipped\n"


def shipment(name: str | None = "acme.csv", attempt: int = 1) -> Delivery:
    return replace(make_delivery(), body=FILE, file_name=name, attempt=attempt)


async def test_writes_the_file_under_its_name_and_leaves_no_temporary(tmp_path: Path) -> None:
    outcome = await DirectoryDelivery({}).deliver(shipment(), {"path": str(tmp_path)})
    assert outcome.kind is OutcomeKind.OK, outcome.error
    assert [p.name for p in tmp_path.iterdir()] == ["acme.csv"]
    assert (tmp_path / "acme.csv").read_bytes() == FILE
    assert (tmp_path / "acme.csv").stat().st_mode & 0o777 == 0o640
    url = f"file://{tmp_path}/acme.csv"
    assert outcome.request == {"method": "WRITE", "url": url, "bytes": len(FILE)}


async def test_a_single_postback_is_named_after_its_delivery(tmp_path: Path) -> None:
    delivery = shipment(name=None)
    outcome = await DirectoryDelivery({}).deliver(delivery, {"path": str(tmp_path)})
    assert outcome.kind is OutcomeKind.OK
    assert [p.name for p in tmp_path.iterdir()] == [f"{delivery.id}.jsonl"]


async def test_sent_again_it_replaces_itself_and_a_symlink_is_not_followed(
    tmp_path: Path,
) -> None:
    share, elsewhere = tmp_path / "share", tmp_path / "secret.txt"
    share.mkdir()
    elsewhere.write_text("keep me")
    (share / "acme.csv").symlink_to(elsewhere)
    plugin = DirectoryDelivery({})
    for attempt in (1, 2):
        outcome = await plugin.deliver(shipment(attempt=attempt), {"path": str(share)})
        assert outcome.kind is OutcomeKind.OK
    assert elsewhere.read_text() == "keep me"
    assert not (share / "acme.csv").is_symlink()
    assert (share / "acme.csv").read_bytes() == FILE


async def test_missing_directory_is_an_error_unless_create(tmp_path: Path) -> None:
    target = tmp_path / "not" / "mounted"
    plugin = DirectoryDelivery({})
    refused = await plugin.deliver(shipment(), {"path": str(target)})
    assert refused.kind is OutcomeKind.RETRY
    assert refused.error == (
        f"directory {target} does not exist: create it (or mount the share), or set "
        "options.create = true"
    )
    made = await plugin.deliver(shipment(), {"path": str(target), "create": True, "mode": "600"})
    assert made.kind is OutcomeKind.OK
    assert (target / "acme.csv").stat().st_mode & 0o777 == 0o600


async def test_an_unwritable_directory_says_so(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = tmp_path / "file-not-dir"
        target.write_text("x")
        outcome = await DirectoryDelivery({}).deliver(shipment(), {"path": str(target)})
        assert outcome.error == f"{target} is not a directory"
        return
    tmp_path.chmod(0o500)
    try:
        outcome = await DirectoryDelivery({}).deliver(shipment(), {"path": str(tmp_path)})
    finally:
        tmp_path.chmod(0o700)
    assert outcome.error == (
        f"no permission to write in {tmp_path}: give the postbackd user write access"
    )


def test_options_are_checked() -> None:
    plugin = DirectoryDelivery({})
    assert plugin.validate_options({"path": "/srv/out"}) == []
    assert plugin.validate_options({}) == [
        'options.path is required: the directory, e.g. "/srv/share/outgoing"'
    ]
    assert plugin.validate_options(
        {"path": "relative/dir", "create": "yes", "mode": "999", "timeout": "soon", "x": 1}
    ) == [
        "options.x is not a directory option (known: path, create, mode, timeout)",
        "options.path 'relative/dir' must be an absolute path",
        "options.create must be true or false",
        "options.mode '999' must be octal permission bits like \"0640\"",
        "options.timeout: invalid duration 'soon': use a number with a unit (ms, s, m, h, d, w), "
        'e.g. "30s", "5m", "1h30m"',
    ]


async def test_check_connect_says_whether_each_directory_takes_files(tmp_path: Path) -> None:
    base = Trigger(
        name="a-share",
        customer="acme",
        events=("order.shipped",),
        template="t",
        delivery="directory",
        location=Location(Path("t.toml"), 1),
        options={"path": str(tmp_path)},
    )
    created = replace(base, name="b-created", options={"path": str(tmp_path / "x"), "create": True})
    missing = replace(base, name="c-missing", options={"path": str(tmp_path / "gone")})
    checks = await DirectoryDelivery({}).check_connections([missing, created, base])
    assert [str(c) for c in checks] == [
        f"ok   a-share: {tmp_path} is writable",
        f"ok   b-created: {tmp_path / 'x'} is writable",
        f"FAIL c-missing: directory {tmp_path / 'gone'} does not exist: create it (or mount the "
        "share), or set options.create = true",
    ]
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing created
