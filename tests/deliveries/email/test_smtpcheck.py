"""The SMTP checklist (postbackd.deliveries.email.smtpcheck) against real aiosmtpd servers."""

from __future__ import annotations

from pathlib import Path

from postbackd.config.model import SmtpConfig
from postbackd.deliveries.email.delivery import EmailDelivery
from postbackd.deliveries.email.smtpcheck import (
    CheckStep,
    check_smtp,
    format_check,
    format_smtp_summary,
)
from postbackd.plugin import Outcome
from tests.deliveries.email.smtp_fixtures import (
    ConfigHolder,
    ServerFactory,
    SmtpTestServer,
    TlsCert,
    free_port,
    smtp_server,
    smtp_server_factory,
    tls_cert,
)

__all__ = ["smtp_server", "smtp_server_factory", "tls_cert"]


def names(steps: list[CheckStep]) -> list[tuple[str, bool]]:
    return [(step.name, step.ok) for step in steps]


async def test_every_step_passes_on_a_plain_server(smtp_server: SmtpTestServer) -> None:
    steps = await check_smtp(smtp_server.smtp_config())

    assert names(steps) == [
        ("dns", True),
        ("tcp", True),
        ("tls", True),
        ("auth", True),
        ("sender", True),
    ]
    assert steps[2].detail.startswith("not used")
    assert steps[3].detail == "no [smtp] username: not logging in"
    assert steps[4].detail == "MAIL FROM:<postbacks@example.com> accepted: 250"
    assert smtp_server.received == []  # RSET: nothing is sent


async def test_starttls_and_auth_pass(
    smtp_server_factory: ServerFactory, tls_cert: TlsCert
) -> None:
    server = smtp_server_factory(tls="starttls", cert=tls_cert, credentials={"u": "p"})
    smtp = server.smtp_config(username="u", password="p")

    steps = await check_smtp(smtp, tls_context=tls_cert.client_context())

    assert all(step.ok for step in steps), format_check(steps)
    assert [step.name for step in steps] == ["dns", "tcp", "tls", "auth", "sender"]
    assert "certificate verified" in steps[2].detail
    assert steps[3].detail == "logged in as u"


async def test_implicit_tls_passes(smtp_server_factory: ServerFactory, tls_cert: TlsCert) -> None:
    server = smtp_server_factory(tls="implicit", cert=tls_cert)

    steps = await check_smtp(server.smtp_config(), tls_context=tls_cert.client_context())

    assert all(step.ok for step in steps), format_check(steps)


async def test_wrong_password_stops_at_auth(smtp_server_factory: ServerFactory) -> None:
    server = smtp_server_factory(credentials={"u": "p"})

    steps = await check_smtp(server.smtp_config(username="u", password="nope"))

    assert names(steps)[-1] == ("auth", False)
    assert steps[-1].detail.startswith(
        f"SMTP authentication failed for u at 127.0.0.1:{server.port}: 535"
    )


async def test_closed_port_stops_at_tcp() -> None:
    port = free_port()

    steps = await check_smtp(SmtpConfig(host="127.0.0.1", port=port, timeout=5.0))

    assert names(steps) == [("dns", True), ("tcp", False)]
    assert steps[1].detail.startswith(f"cannot connect to 127.0.0.1:{port}")


async def test_starttls_to_a_server_without_it_stops_at_tls(smtp_server: SmtpTestServer) -> None:
    steps = await check_smtp(smtp_server.smtp_config(tls="starttls"))

    assert names(steps)[-1] == ("tls", False)
    assert "does not offer STARTTLS" in steps[-1].detail


async def test_untrusted_certificate_stops_at_tls(
    smtp_server_factory: ServerFactory, tls_cert: TlsCert
) -> None:
    server = smtp_server_factory(tls="implicit", cert=tls_cert)

    steps = await check_smtp(server.smtp_config())

    assert names(steps) == [("dns", True), ("tcp", True), ("tls", False)]
    assert "certificate not trusted" in steps[-1].detail


async def test_unresolvable_host_stops_at_dns() -> None:
    steps = await check_smtp(SmtpConfig(host="no-such-host.invalid", port=25, timeout=5.0))

    assert names(steps) == [("dns", False)]
    assert steps[0].detail.startswith("cannot resolve 'no-such-host.invalid'")


async def test_refused_sender_stops_at_sender(smtp_server: SmtpTestServer) -> None:
    smtp_server.handler.mail_actions = ["553 5.7.1 not your address"]

    steps = await check_smtp(smtp_server.smtp_config())

    assert names(steps)[-1] == ("sender", False)
    assert steps[-1].detail == (
        "MAIL FROM:<postbacks@example.com> refused: 553 5.7.1 not your address"
    )


async def test_the_plugin_checks_with_its_own_trust_anchor(
    smtp_server_factory: ServerFactory, tls_cert: TlsCert, tmp_path: Path
) -> None:
    server = smtp_server_factory(tls="starttls", cert=tls_cert)
    holder = ConfigHolder(tmp_path, server.smtp_config())
    plugin = EmailDelivery({"ca_file": str(tls_cert.cert)}, holder.context())
    try:
        steps = await plugin.check_server()
    finally:
        await plugin.close()

    assert all(step.ok for step in steps), format_check(steps)


def test_format_check_lines() -> None:
    steps = [CheckStep("dns", True, "a → 127.0.0.1"), CheckStep("tcp", False, "refused")]

    assert format_check(steps) == "ok   dns     a → 127.0.0.1\nFAIL tcp     refused"


def test_smtp_summary_of_an_outcome() -> None:
    outcome = Outcome.fail(
        "all recipients refused: a@x.org (550 5.1.1 unknown)",
        status=550,
        request={
            "from": "Print <p@example.com>",
            "to": ["a@x.org"],
            "bcc": ["audit@example.com"],
            "subject": "Order 42 shipped",
            "server": "smtp.example.com:587",
            "tls": "starttls",
            "message_id": "<d1@example.com>",
        },
        response={
            "code": 550,
            "message": "5.1.1 unknown",
            "refused": [{"recipient": "a@x.org", "code": 550, "message": "5.1.1 unknown"}],
        },
    )

    assert format_smtp_summary(outcome).splitlines() == [
        "server   smtp://smtp.example.com:587 (tls: starttls)",
        "from     Print <p@example.com>",
        "to       a@x.org",
        "bcc      audit@example.com",
        "subject  Order 42 shipped",
        "msg-id   <d1@example.com>",
        "reply    550 5.1.1 unknown",
        "refused  a@x.org: 550 5.1.1 unknown",
        "result   failed for good: all recipients refused: a@x.org (550 5.1.1 unknown)",
    ]


def test_smtp_summary_of_a_sent_message() -> None:
    outcome = Outcome.ok(
        "250 accepted",
        status=250,
        request={"from": "p@example.com", "to": ["a@x.org"], "subject": "Hi", "server": "h:25"},
        response={"code": 250, "message": "OK queued"},
    )

    summary = format_smtp_summary(outcome)

    assert "reply    250 OK queued" in summary
    assert summary.endswith("result   sent")
