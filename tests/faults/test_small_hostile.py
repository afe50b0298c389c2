"""The smaller hostile inputs of issue 14 (item 9), each against a real daemon.

``breaker_failures = 0`` disables the breaker; a non-numeric ``Retry-After`` is no
``Retry-After``; over-long ``type``/``customer`` are a 400 naming the field; pathological TOML
(5,000-deep arrays, a symlink loop) is a clean error in ``check`` and a rejected reload;
``body_file``/``${file:…}`` pointing at a FIFO or a device are refused without blocking.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from postbackd.testing import PostbackdDaemon, WebhookReceiver, event_payload
from tests.faults.daemon_checks import assert_still_ready, check, log_lines, no_traceback


async def test_breaker_failures_zero_is_accepted_and_never_opens(
    postbackd_daemon: Callable[..., PostbackdDaemon], webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.respond("/down", *([500] * 40))
    daemon = postbackd_daemon(
        daemon={"breaker_failures": 0},
        triggers=[{"delivery": "webhook", "options": {"url": webhook_receiver.url("/down")}}],
    )
    await daemon.start()
    await daemon.submit(*(event_payload(f"evt-b{i}", order=f"o-{i}") for i in range(4)))
    # with a breaker at 10 by default, these 16 failures in a row would open it
    dead = await daemon.wait_for_deliveries(4, states=("dead",))
    assert all(d["attempts"] == 4 for d in dead), dead
    assert "postbackd_breakers_open 0.0" in await daemon.metrics()
    assert not log_lines(daemon, "circuit breaker opened")
    await assert_still_ready(daemon)


async def test_a_retry_after_that_is_not_a_number_is_ignored(
    postbackd_daemon: Callable[..., PostbackdDaemon], webhook_receiver: WebhookReceiver
) -> None:
    calls = 0

    async def busy_then_ok(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(status=503, headers={"Retry-After": "²"})
        return web.Response(status=200)

    webhook_receiver.handle("POST", "/busy", busy_then_ok)
    daemon = postbackd_daemon(
        triggers=[{"delivery": "webhook", "options": {"url": webhook_receiver.url("/busy")}}]
    )
    await daemon.start()
    await daemon.submit(event_payload("evt-retry-after"))
    (done,) = await daemon.wait_for_deliveries(1, states=("done",))
    first, second = (await daemon.delivery(done["id"]))["attempts"]
    assert first["status"] == 503 and first["request"]["url"].endswith("/busy")
    assert first["response"]["headers"]["Retry-After"] == "²"
    assert "raised" not in str(first["error"]), first
    assert second["status"] == 200
    await assert_still_ready(daemon)


async def test_overlong_type_and_customer_are_a_400_naming_the_field(
    postbackd_daemon: Callable[..., PostbackdDaemon],
) -> None:
    daemon = postbackd_daemon()
    await daemon.start()
    for field, value in (("type", "order." + "x" * 900_000), ("customer", "c" * 900_000)):
        event = {**event_payload(f"evt-long-{field}"), field: value}
        status, answer = await daemon.request("POST", "/v1/events", event)
        assert status == 400, answer
        assert answer["field"] == field and "longer than 200 characters" in answer["error"]
    assert len(daemon.logs()) < 100_000, "an over-long value reached the log"
    await assert_still_ready(daemon)


async def test_pathological_toml_is_a_clean_error_and_a_rejected_reload(
    postbackd_daemon: Callable[..., PostbackdDaemon],
) -> None:
    daemon = postbackd_daemon()
    await daemon.start()
    deep = '[[customer]]\nid = "deep"\nname = ' + "[" * 5000 + "]" * 5000 + "\n"
    daemon.write("deep.toml", deep)
    code, output = check(daemon)
    assert code == 1 and no_traceback(output), output
    assert "deep.toml:3: nested deeper than the TOML reader can follow" in output
    status, answer = await daemon.request("POST", "/v1/reload")
    assert status == 422 and "deep.toml:3:" in answer["error"], answer
    (daemon.conf_dir / "deep.toml").unlink()

    os.symlink("loop-b.toml", daemon.conf_dir / "loop-a.toml")
    os.symlink("loop-a.toml", daemon.conf_dir / "loop-b.toml")
    code, output = check(daemon)
    assert code == 1 and no_traceback(output), output
    assert "loop-a.toml: cannot read: Too many levels of symbolic links" in output
    status, answer = await daemon.request("POST", "/v1/reload")
    assert status == 422 and "loop-a.toml" in answer["error"], answer
    logs = daemon.logs()
    assert "reload rejected" in logs and "reload failed after the swap" not in logs
    assert no_traceback(logs)
    status, config = await daemon.request("GET", "/v1/config")
    assert config["generation"] == 1
    await assert_still_ready(daemon)


async def test_body_file_and_file_secret_on_a_fifo_or_device_are_refused(
    postbackd_daemon: Callable[..., PostbackdDaemon], tmp_path: Path
) -> None:
    daemon = postbackd_daemon()
    await daemon.start()
    fifo = tmp_path / "template.fifo"
    os.mkfifo(fifo)
    daemon.write(
        "fifo.toml",
        f'[[template]]\nname = "from-fifo"\nformat = "text"\nbody_file = "{fifo}"\n',
    )
    code, output = check(daemon)  # answers at once: no read of the FIFO
    assert code == 1 and f"is a FIFO (named pipe), not a file: {fifo}" in output, output
    status, answer = await daemon.request("POST", "/v1/reload")
    assert status == 422 and "fifo.toml:4:" in answer["error"], answer

    daemon.write(
        "fifo.toml",
        '[[template]]\nname = "t"\nformat = "text"\nbody = "x"\n'
        '[smtp]\nusername = "u"\npassword = "${file:/dev/zero}"\n',
    )
    code, output = check(daemon)  # answers at once: no read of the FIFO
    assert code == 1 and "is a device, not a file: /dev/zero" in output, output
    status, answer = await daemon.request("POST", "/v1/reload")
    assert status == 422 and "/dev/zero" in answer["error"], answer
    (daemon.conf_dir / "fifo.toml").unlink()
    await assert_still_ready(daemon)
