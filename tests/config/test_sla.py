"""``[[sla]]`` rules in conf.d: what a good rule becomes, and every mistake named at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from postbackd.config.model import SlaRule
from tests.config.test_load import CUSTOMER, TRIGGER, Conf

ALERT_TRIGGER = """
[[trigger]]
name = "acme-delays"
customer = "acme"
events = ["Delayed Order"]
template = "acme-shipped"
delivery = "webhook"
"""


@pytest.fixture
def conf(tmp_path: Path) -> Conf:
    root = tmp_path / "conf.d"
    root.mkdir()
    made = Conf(root)
    made.write("acme.toml", CUSTOMER + TRIGGER + ALERT_TRIGGER)
    return made


def test_a_rule_is_read_with_canonical_types_and_seconds(conf: Conf) -> None:
    conf.write(
        "sla.toml",
        """
        [[sla]]
        name = "ship-in-48h"
        customer = "acme"
        after = "Order received"
        expect = ["order.shipped", "Order cancelled", "order.shipped"]
        within = "2d"
        emit = "Delayed Order"
        """,
    )
    (rule,) = conf.load().sla.values()
    assert rule == SlaRule(
        name="ship-in-48h",
        after="order.received",
        expect=("order.shipped", "order.cancelled"),
        within=172800.0,
        emit="order.delayed",
        location=rule.location,
        customer="acme",
    )
    assert rule.location.path.name == "sla.toml" and rule.location.line == 1
    assert rule.applies_to("acme") and not rule.applies_to("globex")
    assert conf.warnings() == []


def test_every_mistake_is_named_at_its_line(conf: Conf) -> None:
    conf.write(
        "sla.toml",
        """
        [[sla]]
        name = "bad"
        customer = "acmee"
        after = "order.recieved"
        expect = ["order.shiped", "order.*", 3]
        within = "2 days"
        emit = "order.late"
        colour = "red"
        """,
    )
    assert conf.errors() == [
        'sla.toml:3: [[sla]] "bad" customer: no customer "acmee" (did you mean "acme"?)',
        'sla.toml:4: [[sla]] "bad" after: unknown event type "order.recieved" (did you mean '
        '"order.received"?): use a type like "order.shipped", an alias like "Order shipped", '
        'or "namespace.name" for a type a plugin source sends',
        'sla.toml:5: [[sla]] "bad" expect[2]: expected a string, got an integer',
        "sla.toml:6: [[sla]] \"bad\" within: invalid duration '2 days': use a number with a "
        'unit (ms, s, m, h, d, w), e.g. "30s", "5m", "1h30m"',
        'sla.toml:7: [[sla]] "bad" emit: emit = "order.late" is not a known event type (did '
        'you mean "order.delayed"?): a delay alert is one of the catalogue\'s types so '
        'templates can be checked against its sample (e.g. "order.delayed")',
        'sla.toml:8: [[sla]] "bad" colour: unknown key "colour" (known: after, customer, emit, '
        "expect, name, within)",
    ]


def test_globs_zero_durations_and_self_references_are_refused(conf: Conf) -> None:
    conf.write(
        "sla.toml",
        """
        [[sla]]
        name = "glob"
        after = "order.*"
        expect = ["order.shipped"]
        within = "1h"
        emit = "order.delayed"

        [[sla]]
        name = "never"
        after = "order.received"
        expect = ["order.received"]
        within = 0
        emit = "order.received"

        [[sla]]
        name = "empty"
        after = "order.received"
        expect = []
        within = "1h"
        emit = "order.delayed"

        [[sla]]
        name = "glob"
        after = "order.received"
        expect = ["order.shipped"]
        within = "1h"
        emit = "order.delayed"
        """,
    )
    assert conf.errors() == [
        'sla.toml:3: [[sla]] "glob" after: "order.*" is not an event type: a rule waits for '
        'exact types like "order.shipped" (no globs)',
        'sla.toml:11: [[sla]] "never" expect: "order.received" is both after and expected: '
        "the rule would cancel its own timer",
        'sla.toml:12: [[sla]] "never" within: must be longer than zero, e.g. "48h"',
        'sla.toml:13: [[sla]] "never" emit: emit = "order.received" is the event that starts '
        'the rule: emit another type, e.g. "order.delayed"',
        'sla.toml:18: [[sla]] "empty" expect: empty: name the event types that end the wait, '
        'e.g. ["order.shipped"]',
        'sla.toml:23: [[sla]] "glob" name: duplicate sla name "glob": also defined at '
        f"{conf.root / 'sla.toml'}:1",
    ]


def test_after_among_expect_is_refused(conf: Conf) -> None:
    conf.write(
        "sla.toml",
        """
        [[sla]]
        name = "loop"
        after = "order.received"
        expect = ["order.shipped", "Order received"]
        within = "1h"
        emit = "order.delayed"
        """,
    )
    assert conf.errors() == [
        'sla.toml:4: [[sla]] "loop" expect: "order.received" is both after and expected: the '
        "rule would cancel its own timer"
    ]


def test_custom_types_and_unsent_alerts_are_warnings(conf: Conf) -> None:
    conf.write(
        "sla.toml",
        """
        [[sla]]
        name = "mis"
        after = "mis.job_queued"
        expect = ["mis.job_printed"]
        within = "4h"
        emit = "order.failed"
        """,
    )
    assert conf.warnings() == [
        'sla.toml:3: [[sla]] "mis" after: no known source emits "mis.job_queued"; the rule '
        "sees it only if a plugin or a client sends that type",
        'sla.toml:4: [[sla]] "mis" expect[0]: no known source emits "mis.job_printed"; the '
        "rule sees it only if a plugin or a client sends that type",
        'sla.toml:6: [[sla]] "mis" emit: no trigger of any customer sends "order.failed": add '
        "it to a trigger's events, or the delay alerts are only recorded",
    ]
