"""The sftp delivery against a real SFTP server (tests/sftp_server.py): password and key
logins, the pinned host key (a known_hosts line or a fingerprint), upload under a temporary
name then rename, and a reason an operator can act on for every refusal."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import asyncssh

from postbackd.config import Location, Trigger
from postbackd.deliveries.sftp import SftpDelivery
from postbackd.deliveries.sftp.options import parse_options
from postbackd.plugin import OutcomeKind
from postbackd.testing import make_delivery
from tests.sftp_server import SftpServer

FILE = b"orderId,status\no-1,shipped\n"


def shipment(name: str = "acme-20261205.csv", attempt: int = 1) -> object:
    return replace(make_delivery(), body=FILE, file_name=name, attempt=attempt)


async def test_password_login_uploads_under_a_temporary_name_then_renames(
    sftp_server: SftpServer,
) -> None:
    plugin = SftpDelivery({})
    outcome = await plugin.deliver(shipment(), sftp_server.options())  # type: ignore[arg-type]
    assert outcome.kind is OutcomeKind.OK, outcome.error
    assert sftp_server.files() == {"acme-20261205.csv": FILE}
    assert sftp_server.uploads == ["acme-20261205.csv"]  # renamed onto the name, not written
    assert not [p for p in sftp_server.root.iterdir() if p.name.startswith(".")]
    assert outcome.request is not None
    assert outcome.request["url"].endswith("/acme-20261205.csv")
    assert "s3cret-pass" not in repr(outcome)


async def test_key_login_with_a_fingerprint_pin_into_a_directory(sftp_server: SftpServer) -> None:
    (sftp_server.root / "in").mkdir()
    key = sftp_server.client_key.export_private_key("openssh").decode()
    options = sftp_server.options(private_key=key, directory="/in")
    del options["password"], options["host_key"]
    options["host_key_fingerprint"] = sftp_server.fingerprint
    outcome = await SftpDelivery({}).deliver(shipment(), options)  # type: ignore[arg-type]
    assert outcome.kind is OutcomeKind.OK, outcome.error
    assert (sftp_server.root / "in" / "acme-20261205.csv").read_bytes() == FILE


async def test_a_file_sent_again_replaces_itself(sftp_server: SftpServer) -> None:
    plugin = SftpDelivery({})
    for attempt in (1, 2):
        outcome = await plugin.deliver(  # type: ignore[arg-type]
            shipment(attempt=attempt), sftp_server.options()
        )
        assert outcome.kind is OutcomeKind.OK, outcome.error
    assert sftp_server.files() == {"acme-20261205.csv": FILE}


async def test_a_wrong_host_key_is_refused_before_anything_is_sent(
    sftp_server: SftpServer,
) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    outcome = await SftpDelivery({}).deliver(  # type: ignore[arg-type]
        shipment(), sftp_server.options(host_key=other)
    )
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error is not None
    assert f"the host key of 127.0.0.1:{sftp_server.port} is {sftp_server.fingerprint}" in (
        outcome.error
    )
    assert "not the pinned one" in outcome.error and "nothing was sent" in outcome.error
    assert sftp_server.files() == {}


async def test_wrong_password_missing_directory_and_closed_port_say_why(
    sftp_server: SftpServer,
) -> None:
    plugin = SftpDelivery({})
    refused = await plugin.deliver(  # type: ignore[arg-type]
        shipment(), sftp_server.options(password="wrong")
    )
    assert refused.kind is OutcomeKind.RETRY
    assert "refused the login of 'psp'" in str(refused.error)
    assert "wrong" not in str(refused.error)
    missing = await plugin.deliver(  # type: ignore[arg-type]
        shipment(), sftp_server.options(directory="/nope")
    )
    assert missing.kind is OutcomeKind.RETRY and "SFTP error writing /nope/" in str(missing.error)
    sftp_server.acceptor.close()
    await sftp_server.acceptor.wait_closed()
    closed = await plugin.deliver(shipment(), sftp_server.options())  # type: ignore[arg-type]
    assert closed.kind is OutcomeKind.RETRY and "cannot connect to 127.0.0.1" in str(closed.error)


def test_options_are_checked_with_reasons() -> None:
    assert parse_options({})[1] == [
        "options.host is required",
        "options.username is required",
        'set options.password or options.private_key (e.g. "${file:/etc/postbackd/sftp_key}") '
        "to log in",
        "pin the server's host key: set options.host_key (a known_hosts line) or "
        'options.host_key_fingerprint ("SHA256:..."); a file is never uploaded to a server that '
        "is not verified",
    ]
    bad = parse_options(
        {
            "host": "h",
            "username": "u",
            "private_key": "not a key",
            "host_key": "h ssh-ed25519 garbage",
            "port": 70000,
            "colour": "blue",
        }
    )[1]
    assert any(p.startswith("options.colour is not an sftp option") for p in bad)
    assert any(p.startswith("options.port must be a port number") for p in bad)
    assert any(p.startswith("options.private_key cannot be read") for p in bad)
    assert any(p.startswith("options.host_key is not a public key") for p in bad)
    assert not any("not a key" in p for p in bad)  # a secret's value is never echoed


async def test_check_connect_logs_in_and_lists_the_directory(sftp_server: SftpServer) -> None:
    good = Trigger(
        name="ship",
        customer="acme",
        events=("order.shipped",),
        template="t",
        delivery="sftp",
        location=Location(Path("t.toml"), 1),
        options=sftp_server.options(),
    )
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    bad = replace(good, name="wrong-key", options=sftp_server.options(host_key=impostor))
    missing = replace(good, name="missing-dir", options=sftp_server.options(directory="/gone"))
    checks = await SftpDelivery({}).check_connections([good, bad, missing])
    assert [str(c) for c in checks[:2]] == [
        f"FAIL missing-dir: 127.0.0.1:{sftp_server.port}: SFTP error in /gone: "
        "No such file or directory",
        f"ok   ship: sftp://psp@127.0.0.1:{sftp_server.port}/. (host key pinned, logged in)",
    ]
    assert not checks[2].ok
    assert checks[2].text.startswith(
        f"wrong-key: the host key of 127.0.0.1:{sftp_server.port} is {sftp_server.fingerprint}, "
        "not the pinned one"
    )
    assert sftp_server.files() == {}
