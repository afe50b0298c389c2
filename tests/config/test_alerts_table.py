"""The `[alerts]` table: defaults, settings, and errors at their file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from postbackd.config import ConfigError, load_config, load_config_with_warnings
from postbackd.config.model import AlertsConfig


def load(root: Path, text: str):
    (root / "a.toml").write_text(text, encoding="utf-8")
    return load_config(root, environ={})


def errors(root: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(root, text)
    return [f"{d.path.name}:{d.line}: {d.message}" for d in info.value.errors]


def test_without_the_table_the_defaults_apply(tmp_path: Path) -> None:
    alerts = load(tmp_path, "").alerts
    assert alerts == AlertsConfig()
    assert (alerts.customer, alerts.destination_failing_after) == ("postbackd", 900.0)
    assert (alerts.source_down_after, alerts.delivery_dead_window) == (60.0, 60.0)


def test_the_settings_are_read(tmp_path: Path) -> None:
    alerts = load(
        tmp_path,
        '[alerts]\ncustomer = "ops"\ndestination_failing_after = "2m"\n'
        'source_down_after = "30s"\ndelivery_dead_window = "5m"\n\n'
        '[[customer]]\nid = "ops"\nname = "Operations"\n',
    ).alerts
    assert (alerts.customer, alerts.destination_failing_after) == ("ops", 120.0)
    assert (alerts.source_down_after, alerts.delivery_dead_window) == (30.0, 300.0)


def test_bad_settings_are_reported_at_their_lines(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        "[alerts]\n"
        'customer = "nobody"\n'
        'destination_failing_after = "soon"\n'
        'source_down_after = "100ms"\n'
        "delivery_dead_window = true\n"
        'destination_failing_afterr = "1m"\n',
    )
    assert len(found) == 5, found
    assert found[0].startswith("a.toml:")
    by_line = {line.split(":")[1]: line for line in found}
    assert 'no customer "nobody"' in by_line["2"]
    assert "destination_failing_after" in by_line["3"]
    assert "at least 1s" in by_line["4"]
    assert "delivery_dead_window" in by_line["5"]
    assert "destination_failing_afterr" in by_line["6"]


def test_the_default_customer_need_not_be_declared(tmp_path: Path) -> None:
    assert load(tmp_path, '[alerts]\nsource_down_after = "5m"\n').alerts.customer == "postbackd"


def test_a_trigger_may_route_the_alert_types_without_a_warning(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(
        '[[customer]]\nid = "postbackd"\nname = "Ops"\n\n'
        '[[trigger]]\nname = "ops"\ncustomer = "postbackd"\n'
        'events = ["postbackd.destination_failing", "postbackd.*"]\n'
        'template = "builtin:alert-json"\ndelivery = "webhook"\n'
        '[trigger.options]\nurl = "https://ops.example/hook"\n',
        encoding="utf-8",
    )
    result = load_config_with_warnings(tmp_path, environ={})
    assert [str(w) for w in result.warnings if "no known source" in str(w)] == []
    assert result.config.triggers["ops"].events == (
        "postbackd.destination_failing",
        "postbackd.*",
    )


def test_a_trigger_of_another_customer_naming_alert_types_is_warned_at_its_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.toml").write_text(
        '[[customer]]\nid = "acme"\nname = "Acme"\n\n'
        '[[trigger]]\nname = "acme-alerts"\ncustomer = "acme"\n'
        'events = ["order.shipped", "postbackd.*"]\n'
        'template = "builtin:alert-json"\ndelivery = "webhook"\n'
        '[trigger.options]\nurl = "https://acme.example/hook"\n',
        encoding="utf-8",
    )
    result = load_config_with_warnings(tmp_path, environ={})
    (warning,) = [w for w in result.warnings if "postbackd.*" in w.message]
    assert warning.line == 8
    assert 'belong to the [alerts] customer "postbackd" alone' in warning.message
