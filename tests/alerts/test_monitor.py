"""The alert monitor on a real generation, real breakers and a real spool (both backends):
what it raises, and that raising an episode again stores nothing new."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from postbackd.alerts import AlertMonitor
from postbackd.alerts.episodes import Alert
from postbackd.breaker import BreakerBoard
from postbackd.generation import Generation, load_generation, open_plugins
from postbackd.intake import Intake
from postbackd.metrics import Metrics
from postbackd.spool import ListFilter, Spool
from postbackd.testing import make_delivery, make_event

CONF = """
[alerts]
destination_failing_after = "60s"
source_down_after = "30s"
delivery_dead_window = "10s"

[[customer]]
id = "acme"
name = "Acme"

[[customer]]
id = "postbackd"
name = "Ops"

[[trigger]]
name = "acme-hook"
customer = "acme"
events = ["order.*"]
template = "builtin:order-status-json"
delivery = "webhook"
[trigger.options]
url = "https://hooks.acme.example/orders"

[[trigger]]
name = "ops"
customer = "postbackd"
events = ["postbackd.*"]
template = "builtin:alert-json"
delivery = "webhook"
[trigger.options]
url = "https://ops.example/alerts"
"""
DEST = "https://hooks.acme.example:443"


@pytest.fixture
def generation(tmp_path: Path) -> Generation:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "a.toml").write_text(
        f'[daemon]\nspool = "{tmp_path / "unused.db"}"\n' + dedent(CONF), encoding="utf-8"
    )
    return load_generation(conf, open_plugins(conf, use_entry_points=False), 1)


class Parts:
    def __init__(self, generation: Generation, spool: Spool) -> None:
        self.breakers = BreakerBoard(2, 5.0)
        self.ready: dict[str, bool] = {}
        self.errors: dict[str, str] = {}
        self.intake = Intake(spool, lambda: generation, Metrics(), lambda event: None)
        self.monitor = AlertMonitor(
            lambda: generation, self.intake, self.breakers, lambda: (self.ready, self.errors)
        )
        self.spool = spool

    def raised(self) -> list[Alert]:
        """What the monitor queued for storing, taken out."""
        taken = []
        while not self.monitor._queue.empty():
            taken.append(self.monitor._queue.get_nowait())
        return taken


@pytest.fixture
def parts(generation: Generation, spool: Spool) -> Parts:
    return Parts(generation, spool)


def test_a_breaker_open_past_the_setting_is_one_alert_then_one_recovery(parts: Parts) -> None:
    for now in (100.0, 101.0):
        parts.breakers.record(DEST, False, now)
    parts.monitor.breaker_opened(DEST, "HTTP 503 from https://hooks.acme.example/orders")
    parts.monitor.look(150.0)
    assert parts.raised() == []
    parts.monitor.look(161.0)
    (failing,) = parts.raised()
    assert failing.type == "postbackd.destination_failing"
    assert failing.details["triggers"] == ["acme-hook"]
    assert failing.details["customers"] == ["acme"]
    assert failing.details["failingForSeconds"] == 60
    assert failing.details["lastError"].startswith("HTTP 503")
    parts.breakers.record(DEST, False, 110.0)  # a failed probe: the same episode
    parts.monitor.look(500.0)
    assert parts.raised() == []
    parts.breakers.record(DEST, True, 600.0)
    parts.monitor.look(601.0)
    (recovered,) = parts.raised()
    assert (recovered.type, recovered.status) == ("postbackd.destination_recovered", "resolved")
    assert recovered.episode == failing.episode
    assert recovered.event_id != failing.event_id


def test_a_source_down_past_the_setting_is_told_and_its_removal_ends_the_episode(
    parts: Parts,
) -> None:
    parts.ready["amqp"] = False
    parts.errors["amqp"] = "cannot consume: connection refused"
    parts.monitor.look(1000.0)
    parts.monitor.look(1029.0)
    assert parts.raised() == []
    parts.monitor.look(1030.0)
    (down,) = parts.raised()
    assert down.type == "postbackd.source_down"
    assert down.details["error"] == "cannot consume: connection refused"
    del parts.ready["amqp"]  # a reload removed it
    parts.monitor.look(1031.0)
    (gone,) = parts.raised()
    assert gone.type == "postbackd.source_recovered"
    assert gone.details["removed"] is True
    assert "removed from the configuration" in gone.summary


def test_dead_deliveries_are_gathered_and_an_alerts_own_death_is_not(parts: Parts) -> None:
    for n in range(3):
        parts.monitor.delivery_dead(
            make_delivery(make_event(f"evt-{n}"), trigger="acme-hook"), DEST, "410 Gone"
        )
    own = make_delivery(make_event("postbackd:x:1", customer="postbackd"), trigger="ops")
    parts.monitor.delivery_dead(own, "https://ops.example:443", "410 Gone")
    parts.monitor.look(10**12)  # long after every window
    (dead,) = parts.raised()
    assert dead.type == "postbackd.delivery_dead"
    assert [d["eventId"] for d in dead.details["deliveries"]] == ["evt-0", "evt-1", "evt-2"]
    assert dead.details["destination"] == DEST


async def test_an_episode_raised_again_is_stored_once_and_routed_to_the_alert_trigger(
    parts: Parts,
) -> None:
    errors = ["conf.d/a.toml:3: no template 'x'"]
    parts.monitor.reload_rejected(errors, "SIGHUP")
    parts.monitor.reload_rejected(errors, "conf.d changed")
    parts.monitor.reload_rejected(["conf.d/a.toml:4: another"], "SIGHUP")
    first, again, other = parts.raised()
    assert first.event_id == again.event_id != other.event_id
    for alert in (first, again, other):
        await parts.monitor._store(alert)
    stored, _ = await parts.spool.list_deliveries(ListFilter(customer="postbackd"))
    assert sorted(d.event_id for d in stored) == sorted([first.event_id, other.event_id])
    assert {d.trigger for d in stored} == {"ops"}
    acme, _ = await parts.spool.list_deliveries(ListFilter(customer="acme"))
    assert acme == []  # an acme trigger for order.* never sees an alert
    counted = parts.intake.metrics.render().decode()
    kind = 'type="postbackd.reload_rejected"'
    assert f'postbackd_alerts_total{{outcome="stored",{kind}}} 2.0' in counted
    assert f'postbackd_alerts_total{{outcome="duplicate",{kind}}} 1.0' in counted


async def test_an_alert_no_trigger_routes_is_counted_and_not_stored(
    tmp_path: Path, spool: Spool
) -> None:
    conf = tmp_path / "quiet.d"
    conf.mkdir()
    (conf / "a.toml").write_text(CONF.split("[[trigger]]")[0], encoding="utf-8")
    quiet = load_generation(conf, open_plugins(conf, use_entry_points=False), 1)
    parts = Parts(quiet, spool)
    parts.monitor.reload_rejected(["conf.d/a.toml:1: broken"], "SIGHUP")
    (alert,) = parts.raised()
    await parts.monitor._store(alert)
    stored, _ = await spool.list_deliveries(ListFilter())
    assert stored == []
    counted = parts.intake.metrics.render().decode()
    assert 'postbackd_alerts_total{outcome="unrouted",type="postbackd.reload_rejected"} 1.0' in (
        counted
    )
