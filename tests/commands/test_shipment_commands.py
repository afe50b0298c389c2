"""The command line on the example's shipment-file trigger (conf.d/print-workflows/): `test`
sends a file of one row named ``test-…``, `check --connect` says whether the directory takes
files — real subprocesses on a copy of the example."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

from tests.commands.test_cli import postbackd
from tests.paths import example_conf

TRIGGER = "northwind-shipments-file"


def example_writing_to(tmp_path: Path, share: Path) -> Path:
    conf = example_conf(tmp_path)
    toml = conf / "print-workflows" / "shipment-files.toml"
    toml.write_text(toml.read_text().replace("/tmp/postbackd-shipments/northwind", str(share)))
    return conf


def test_test_sends_a_one_row_file_named_test(tmp_path: Path) -> None:
    share = tmp_path / "share"
    conf = example_writing_to(tmp_path, share)
    result = postbackd("test", TRIGGER, "--sample", "order.shipped", "-c", str(conf))
    assert result.returncode == 0, result.stderr
    assert "outcome: delivered" in result.stdout
    (written,) = share.iterdir()
    assert written.name.startswith("test-northwind-shipments-") and written.suffix == ".xml"
    root = ElementTree.fromstring(written.read_bytes())
    assert root.tag == "Shipments" and root.attrib["count"] == "1"
    assert [s.attrib["reference"] for s in root] == ["ACME-100234"]


def test_check_connect_reports_the_directory(tmp_path: Path) -> None:
    share = tmp_path / "share"
    conf = example_writing_to(tmp_path, share)
    result = postbackd("check", "--connect", "-c", str(conf))
    assert f"ok   {TRIGGER}: {share} is writable" in result.stdout, result.stdout + result.stderr
