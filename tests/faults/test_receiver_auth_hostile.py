"""Hostile receiver-authentication settings against a real daemon (issue 17, item 9).

A reload pointing the TLS options at a FIFO, a device, an oversized file or a directory is
rejected with each problem at its line — nothing is opened that could block, nothing huge is
read — and the running configuration keeps delivering over mutual TLS.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from postbackd.testing import PostbackdDaemon, WebhookReceiver, event_payload
from tests.certs import Pki, make_pki
from tests.faults.daemon_checks import assert_still_ready, no_traceback


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_receiver(pki: Pki) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(ssl_context=pki.server_context()).start()
    try:
        yield receiver
    finally:
        receiver.stop()


async def test_hostile_tls_paths_on_reload_are_refused_and_delivery_goes_on(
    postbackd_daemon: Callable[..., PostbackdDaemon],
    tls_receiver: WebhookReceiver,
    pki: Pki,
    tmp_path: Path,
) -> None:
    good = {"client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
    daemon = postbackd_daemon(
        triggers=[
            {
                "name": "mtls",
                "delivery": "webhook",
                "options": {"url": tls_receiver.url(), "tls": {**good, "ca": str(pki.ca)}},
            }
        ]
    )
    await daemon.start()
    await daemon.submit(event_payload("evt-before"))
    await daemon.wait_for_deliveries(1, states=("done",))

    fifo = tmp_path / "cert.fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "ca-bundle.pem"
    with huge.open("wb") as file:
        file.truncate(64 * 1024 * 1024)  # sparse: big to read, cheap to make
    hostile = {"client_cert": str(fifo), "client_key": "/dev/zero", "ca": str(huge)}
    path = daemon.conf_dir / "postbackd.toml"
    text = path.read_text()
    config = tomli_w.dumps(
        {
            **_toml(text),
            "trigger": [
                {
                    **_toml(text)["trigger"][0],
                    "options": {
                        "url": tls_receiver.url(),
                        "tls": hostile,
                        "oauth2": {"token_url": "file:///etc"},
                    },
                }
            ],
        }
    )
    path.write_text(config)
    status, answer = await daemon.request("POST", "/v1/reload")
    assert status == 422, answer
    error = answer["error"]
    lines = config.splitlines()
    for key, problem in [
        ("client_cert", f"not a regular file: {fifo}"),
        ("client_key", "options.tls.client_key: not a regular file: "),  # path masked: a key
        ("ca", "bytes; a certificate, key or CA bundle file is at most 4 MiB"),
    ]:
        line = next(i for i, text in enumerate(lines, 1) if text.startswith(f"{key} = "))
        assert f"postbackd.toml:{line}: " in error and problem in error, (key, line, error)
    assert "options.oauth2.token_url: expected an http(s) URL" in error, error
    assert no_traceback(error)

    path.write_text(text)  # the running configuration was kept all along
    await daemon.submit(event_payload("evt-after"))
    await assert_still_ready(daemon, deliveries=3)
    assert len(tls_receiver.requests) == 3
    assert no_traceback(daemon.logs())


def _toml(text: str) -> dict[str, Any]:
    return tomllib.loads(text)
