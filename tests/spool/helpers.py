"""Values and steps the spool's tests share: events, new deliveries, attempt results."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from postbackd.events import Event
from postbackd.spool import Spool
from postbackd.spool.model import AttemptResult, DeliveryState, NewDelivery, SubmitOutcome
from postbackd.spool.postgres.store import PostgresSpool
from postbackd.spool.sqlite.store import SqliteSpool

S = DeliveryState


def make_event(
    event_id: str,
    *,
    order: str | None = "o1",
    customer: str = "acme",
    type_: str = "order.shipped",
) -> Event:
    data: dict[str, Any] = {"customerId": customer, "items": []}
    if order is not None:
        data["orderId"] = order
    return Event(event_id, type_, customer, "2026-01-01T00:00:00Z", data)


def new_delivery(
    delivery_id: str,
    *,
    trigger: str = "t1",
    order: str | None = "o1",
    customer: str = "acme",
    event_type: str = "order.shipped",
    state: DeliveryState = S.PENDING,
    ordered: bool = False,
    supersede: bool = False,
    body: bytes | None = b'{"status":"shipped"}',
    render_error: str | None = None,
    destination: str | None = None,
    next_attempt_at: float | None = None,
) -> NewDelivery:
    return NewDelivery(
        id=delivery_id,
        trigger=trigger,
        plugin="webhook",
        customer=customer,
        event_type=event_type,
        order_id=order,
        format="json",
        content_type="application/json",
        subject=None,
        body=body,
        render_error=render_error,
        state=state,
        ordered=ordered,
        supersede=supersede,
        destination=destination,
        next_attempt_at=next_attempt_at,
    )


async def add(
    spool: Spool,
    event_id: str,
    *deliveries: NewDelivery,
    order: str | None = "o1",
    customer: str = "acme",
) -> SubmitOutcome:
    event = make_event(event_id, order=order, customer=customer)
    return await spool.submit(event, list(deliveries), source="test")


def result(
    delivery_id: str,
    state: DeliveryState,
    *,
    outcome: str = "ok",
    number: int = 1,
    next_at: float | None = None,
    status: int | None = 200,
    error: str | None = None,
    request: dict[str, Any] | None = None,
    response: dict[str, Any] | None = None,
    destination: str | None = "https://hooks.example:443",
    counted: bool = True,
) -> AttemptResult:
    return AttemptResult(
        delivery_id=delivery_id,
        number=number,
        started_at=time.time(),
        duration=0.05,
        outcome=outcome,
        new_state=state,
        next_attempt_at=next_at,
        status=status,
        error=error,
        request=request,
        response=response,
        destination=destination,
        counted=counted,
    )


def soon() -> float:
    return time.time() + 1


async def count_rows(spool: Spool, table: str) -> int:
    """Rows of a spool table, read behind the interface (its own connection, either backend)."""
    if isinstance(spool, SqliteSpool):
        count: int = await spool._reader.call(
            lambda conn: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        )
        return count
    assert isinstance(spool, PostgresSpool)
    conn = await asyncpg.connect(spool.url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def state_of(spool: Spool, delivery_id: str) -> DeliveryState:
    detail = await spool.get_delivery(delivery_id)
    assert detail is not None
    return detail.summary.state
