"""Intake and router with ``changes``: the order's previous event is fetched only when a
template reads it, once per event, from the batch itself when the batch holds it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from postbackd.events import Event
from postbackd.generation import Generation, load_generation, open_plugins
from postbackd.intake import Intake
from postbackd.metrics import Metrics
from postbackd.spool import Spool, open_spool

CONF = """
[[customer]]
id = "acme"

[[template]]
name = "new-parcels"
format = "json"
body = '{"new": {{ changes.new_parcels | map(attribute="trackingCode") | list | tojson }}}'

[[template]]
name = "plain"
format = "json"
body = '{"orderId": {{ orderId | default(none) | tojson }}}'

[[trigger]]
name = "acme-new-parcels"
customer = "acme"
events = ["order.shipped"]
template = "new-parcels"
delivery = "webhook"
[trigger.options]
url = "https://acme.example/parcels"

[[trigger]]
name = "acme-plain"
customer = "acme"
events = ["order.*"]
template = "plain"
delivery = "webhook"
[trigger.options]
url = "https://acme.example/plain"
"""


class CountingSpool:
    """The real spool, counting the history reads intake makes."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.reads: list[tuple[str, str, str]] = []

    async def previous_event(
        self, customer: str, order_id: str, before_event_id: str
    ) -> dict[str, Any] | None:
        self.reads.append((customer, order_id, before_event_id))
        return await self.spool.previous_event(customer, order_id, before_event_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.spool, name)


@pytest.fixture
def generation(tmp_path: Path) -> Generation:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "daemon.toml").write_text(f'[daemon]\nspool = "{tmp_path / "spool.db"}"\n')
    (conf / "acme.toml").write_text(dedent(CONF))
    return load_generation(conf, open_plugins(conf, use_entry_points=False), 1)


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[CountingSpool]:
    opened = await open_spool(tmp_path / "spool.db")
    try:
        yield CountingSpool(opened)
    finally:
        await opened.close()


def shipped(event_id: str, *codes: str, order: str | None = "o1") -> Event:
    data: dict[str, Any] = {
        "items": [
            {
                "itemReferenceId": f"i-{code}",
                "fulfillmentStatus": "shipped",
                "fulfillments": [{"trackingCode": code}],
            }
            for code in codes
        ]
    }
    if order is not None:
        data["orderId"] = order
    return Event(event_id, "order.shipped", "acme", "2026-11-28T10:00:00Z", data)


async def new_parcels_sent(spool: CountingSpool, delivery_id: str) -> list[str]:
    detail = await spool.get_delivery(delivery_id)
    assert detail is not None and detail.body is not None
    return list(json.loads(detail.body)["new"])


def intake_for(spool: CountingSpool, generation: Generation) -> Intake:
    return Intake(spool, lambda: generation, Metrics(), lambda event: None)  # type: ignore[arg-type]


async def test_each_shipment_postback_names_only_its_new_parcels(
    spool: CountingSpool, generation: Generation
) -> None:
    intake = intake_for(spool, generation)
    await intake.submit(shipped("e1", "P1"), source="test")
    await intake.submit(shipped("e2", "P1", "P2"), source="test")
    router = generation.router
    trigger = generation.config.triggers["acme-new-parcels"]
    first = router.new_delivery(trigger, shipped("e1", "P1")).id
    second = router.new_delivery(trigger, shipped("e2", "P1", "P2")).id
    assert await new_parcels_sent(spool, first) == ["P1"]
    assert await new_parcels_sent(spool, second) == ["P2"]
    assert spool.reads == [("acme", "o1", "e1"), ("acme", "o1", "e2")]


async def test_a_batch_compares_with_its_own_earlier_event_of_the_order(
    spool: CountingSpool, generation: Generation
) -> None:
    intake = intake_for(spool, generation)
    await intake.submit_many(
        [shipped("e1", "P1"), shipped("e2", "P1", "P2"), shipped("f1", "Q1", order="o2")],
        source="test",
    )
    trigger = generation.config.triggers["acme-new-parcels"]
    second = generation.router.new_delivery(trigger, shipped("e2", "P1", "P2")).id
    assert await new_parcels_sent(spool, second) == ["P2"]
    assert spool.reads == [("acme", "o1", "e1"), ("acme", "o2", "f1")]


async def test_no_read_without_an_order_id_or_a_template_that_reads_changes(
    spool: CountingSpool, generation: Generation
) -> None:
    intake = intake_for(spool, generation)
    await intake.submit(shipped("e1", "P1", order=None), source="test")
    in_transit = Event("e2", "order.in_transit", "acme", "2026-11-28T10:00:00Z", {"orderId": "o1"})
    await intake.submit(in_transit, source="test")
    assert spool.reads == []
    assert generation.router.needs_previous(shipped("e3", "P1"))
    assert not generation.router.needs_previous(in_transit)


def test_render_without_a_previous_event_takes_the_event_as_its_orders_first(
    generation: Generation,
) -> None:
    trigger = generation.config.triggers["acme-new-parcels"]
    outcome = generation.router.render(trigger, shipped("e1", "P1", "P2"))
    assert outcome.rendered is not None
    assert json.loads(outcome.rendered.body) == {"new": ["P1", "P2"]}
    again = generation.router.render(
        trigger, shipped("e2", "P1", "P2"), shipped("e1", "P1").to_dict()
    )
    assert again.rendered is not None and json.loads(again.rendered.body) == {"new": ["P2"]}
