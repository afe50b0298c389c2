"""`[daemon] allow_destinations` with ports, against a real daemon (issue 14, item 9).

Allowing one receiver must not allow every port of its machine: with ``"127.0.0.1:PORT"``
listed, a postback to that port is delivered while the same address on another port is refused
before connecting, and ``"localhost:PORT"`` allows that name on that port only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from postbackd.testing import PostbackdDaemon, WebhookReceiver, event_payload
from tests.faults.daemon_checks import assert_still_ready, check, no_traceback


@pytest.fixture
def other_receiver() -> Iterator[WebhookReceiver]:
    """A second receiver on the same address, another port: the port that is not listed."""
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


async def test_a_listed_port_is_delivered_and_another_port_of_the_same_host_refused(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    webhook_receiver: WebhookReceiver,
    other_receiver: WebhookReceiver,
) -> None:
    named = f"http://localhost:{other_receiver.port}/named"
    daemon = postbackd_daemon(
        daemon={
            "allow_private_destinations": False,
            "allow_destinations": [
                f"127.0.0.1:{webhook_receiver.port}",
                f"localhost:{other_receiver.port}",
            ],
        },
        triggers=[
            {"name": "listed", "delivery": "webhook", "options": {"url": webhook_receiver.url()}},
            {
                "name": "other-port",
                "delivery": "webhook",
                "retry": False,
                "options": {"url": other_receiver.url("/unlisted")},
            },
            {"name": "by-name", "delivery": "webhook", "options": {"url": named}},
        ],
    )
    code, said = check(daemon)
    assert code == 0, said
    await daemon.start()
    await daemon.submit(event_payload("evt-allow-port"))
    finals = await daemon.wait_for_deliveries(3)
    by_trigger = {d["trigger"]: d for d in finals}
    assert by_trigger["listed"]["state"] == "done", by_trigger
    assert by_trigger["by-name"]["state"] == "done", by_trigger
    refused = by_trigger["other-port"]
    assert refused["state"] in ("failed", "dead"), refused
    (attempt,) = (await daemon.delivery(refused["id"]))["attempts"]
    assert attempt["status"] is None
    assert f'allow_destinations = ["127.0.0.1:{other_receiver.port}"]' in attempt["error"]
    # nothing reached the unlisted port; the listed one and the named one got theirs
    assert [r.path for r in other_receiver.requests] == ["/named"]
    assert [r.path for r in webhook_receiver.requests] == ["/hook"]
    await assert_still_ready(daemon)


async def test_check_refuses_a_host_name_without_a_port_naming_file_and_line(
    postbackd_daemon: Callable[..., PostbackdDaemon],
) -> None:
    daemon = postbackd_daemon(daemon={"allow_destinations": ["10.1.2.0/24", "receiver.internal"]})
    code, said = check(daemon)
    assert code == 1 and no_traceback(said), said
    assert "allow_destinations[1]: a host name needs a port" in said
    assert 'write "receiver.internal:443"' in said
    assert ".toml:" in said
