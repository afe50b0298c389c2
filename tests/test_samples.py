"""The sample events, their loader, the `postbackd samples` command and their packaging."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from postbackd.alerts import Alert
from postbackd.cli import main
from postbackd.events import CANONICAL_TYPES, SYSTEM_TYPES, parse_event
from postbackd.samples import (
    UnknownSample,
    fresh_event_id,
    load_sample,
    sample_event,
    sample_types,
)

REPO = Path(__file__).resolve().parent.parent
FULFILLMENT_FIELDS = {
    "trackingCode",
    "trackingUrl",
    "shipmentMethodName",
    "shipmentMethodUid",
    "carrierName",
    "carrierUid",
    "fulfillmentCountry",
}
ORDER_FIELDS = {
    "id",
    "orderId",
    "orderReferenceId",
    "storeId",
    "customerId",
    "created",
    "fulfillmentStatus",
    "items",
}


def test_there_is_a_sample_for_every_canonical_type_and_every_alert() -> None:
    assert sample_types() == [*CANONICAL_TYPES, *SYSTEM_TYPES]


@pytest.mark.parametrize("event_type", SYSTEM_TYPES)
def test_each_alert_sample_has_the_shape_the_daemon_raises(event_type: str) -> None:
    raw = load_sample(event_type)
    data = raw["data"]
    shape = Alert(event_type, data["episode"], data["status"], "", 0.0, {}).data("node")
    assert set(data) == set(shape)
    assert raw["id"] == f"postbackd:{event_type.removeprefix('postbackd.')}:{data['episode']}"
    assert data["alert"] == event_type.removeprefix("postbackd.")
    assert raw["customer"] == "postbackd"
    assert data["status"] == ("resolved" if event_type.endswith("recovered") else "firing")
    assert sample_event(event_type).type == event_type


@pytest.mark.parametrize("event_type", CANONICAL_TYPES)
def test_each_sample_is_a_full_valid_envelope(event_type: str) -> None:
    raw = load_sample(event_type)
    assert set(raw) == {"id", "type", "customer", "time", "data"}
    assert raw["type"] == event_type
    assert raw["customer"] == "acme"
    assert set(raw["data"]) >= ORDER_FIELDS
    event = sample_event(event_type)
    assert event.type == event_type
    assert event.id == raw["id"]
    assert event.order_id == raw["data"]["orderId"]
    for item in raw["data"]["items"]:
        assert {"itemReferenceId", "fulfillmentStatus", "fulfillments"} <= set(item)
        for fulfillment in item["fulfillments"]:
            assert set(fulfillment) >= FULFILLMENT_FIELDS


def test_sample_ids_are_distinct() -> None:
    ids = [load_sample(t)["id"] for t in sample_types()]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("event_type", ["order.failed", "order.cancelled"])
def test_failures_carry_reasons(event_type: str) -> None:
    data = load_sample(event_type)["data"]
    assert data["failureReason"]
    assert data["failureReasons"][0]["message"]


def test_shipped_sample_has_two_items_with_two_fulfillments_each() -> None:
    items = load_sample("order.shipped")["data"]["items"]
    assert [len(item["fulfillments"]) for item in items] == [2, 2]
    methods = {f["shipmentMethodUid"] for item in items for f in item["fulfillments"]}
    assert "dhl_express_uid" in methods
    codes = [f["trackingCode"] for item in items for f in item["fulfillments"]]
    assert len(set(codes)) == 4


def test_aliases_name_samples_and_each_load_is_a_fresh_copy() -> None:
    first = load_sample("Order shipped")
    assert first == load_sample("order.shipped")
    first["data"]["items"].clear()
    assert load_sample("order.shipped")["data"]["items"]
    assert sample_event("Produced").type == "order.in_production"


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(UnknownSample) as caught:
        load_sample("order.teleported")
    assert isinstance(caught.value, KeyError)
    assert str(caught.value) == (
        "no sample event of type 'order.teleported'; samples exist for: "
        + ", ".join([*CANONICAL_TYPES, *SYSTEM_TYPES])
    )


# ---------------------------------------------------------------- the command


def test_command_lists_types(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["samples"]) == 0
    assert capsys.readouterr().out.splitlines() == [*CANONICAL_TYPES, *SYSTEM_TYPES]


def test_command_prints_one_sample_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["samples", "Order delivered", "--fixed-id"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == load_sample("order.delivered")
    assert out.startswith('{\n  "id": ')


def test_command_gives_a_fresh_event_id_each_time(capsys: pytest.CaptureFixture[str]) -> None:
    """Repeating the README's "Try it" makes a new event, not a silent duplicate."""
    printed = []
    for _ in range(2):
        assert main(["samples", "order.shipped"]) == 0
        printed.append(json.loads(capsys.readouterr().out))
    first, second = printed
    fixed = load_sample("order.shipped")
    assert first["id"] != second["id"]
    assert fixed["id"] not in (first["id"], second["id"])
    for sample in printed:
        assert re.fullmatch(r"evt_[0-9A-HJKMNP-TV-Z]{26}", sample["id"])
        assert {**sample, "id": fixed["id"]} == fixed
        assert parse_event(sample).id == sample["id"]  # a valid event id
    assert list(first) == list(fixed)  # the id stays the first key


def test_fresh_event_ids_sort_by_time() -> None:
    assert fresh_event_id(1_000.0) < fresh_event_id(1_000.002) < fresh_event_id(2_000_000_000)
    assert fresh_event_id(0.0).startswith("evt_0000000000")


def test_command_rejects_an_unknown_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["samples", "nope"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no sample event of type 'nope'" in captured.err
    assert "order.shipped" in captured.err


def test_command_never_reads_the_configuration(tmp_path: Path) -> None:
    broken = tmp_path / "conf.d"
    broken.mkdir()
    (broken / "bad.toml").write_text("this is = = not toml\n")
    env = {**os.environ, "POSTBACKD_CONF_DIR": str(broken)}
    result = subprocess.run(
        [sys.executable, "-m", "postbackd", "samples", "order.shipped"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["type"] == "order.shipped"


def test_samples_ship_in_the_wheel(tmp_path: Path) -> None:
    """The JSON files are package data: a wheel carries them and they load from it."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("postbackd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for event_type in (*CANONICAL_TYPES, *SYSTEM_TYPES):
        assert f"postbackd/samples/{event_type}.json" in names
    # The operating guide the systemd unit's Documentation= points at, under <venv>/share/doc.
    assert any(n.endswith(".data/data/share/doc/postbackd/operating.md") for n in names), names
    code = "import postbackd.samples as s; print(s.__file__); print(len(s.sample_types()))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(wheel)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded_from, count = result.stdout.splitlines()
    assert loaded_from.startswith(str(wheel))
    assert count == str(len(CANONICAL_TYPES) + len(SYSTEM_TYPES))
