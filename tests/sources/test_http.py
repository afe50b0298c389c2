"""A batch bigger than what arrives in one read is taken whole (it was cut and refused as
malformed JSON when the body was read with a single ``read``)."""

from __future__ import annotations

from tests.configs import event


async def test_a_large_batch_is_read_to_its_end(receiver, daemon_factory):
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    batch = [event(f"big-{i}", order=f"o-{i}", note="n" * 1500) for i in range(400)]  # ~700 KB
    status, body = await daemon.post(batch)
    assert status == 202, body
    assert len(body["accepted"]) == 400
    await receiver.wait_for(400, timeout=60)
