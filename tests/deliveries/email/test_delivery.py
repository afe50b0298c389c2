"""The email delivery against a real SMTP server (aiosmtpd): outcomes, content, pooling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog

from postbackd.deliveries.email import EmailDelivery, postbackd_register_deliveries
from postbackd.deliveries.email import pool as smtp_pool
from postbackd.plugin import Delivery, OutcomeKind
from tests.deliveries.email.smtp_fixtures import (
    ConfigHolder,
    ServerFactory,
    SmtpTestServer,
    TlsCert,
    smtp_server,
    smtp_server_factory,
    tls_cert,
)

__all__ = ["smtp_server", "smtp_server_factory", "tls_cert"]

TO = {"to": "Kunde <kunde@example.com>"}


def make_delivery(
    delivery_id: str = "dlv-0001",
    *,
    fmt: str = "text",
    subject: str | None = "Order 42 shipped",
    body: bytes = b"Your order 42 is on its way.\n",
) -> Delivery:
    return Delivery(
        id=delivery_id,
        event_id="evt-1",
        event_type="order.shipped",
        customer="acme",
        trigger="acme-shipped-mail",
        attempt=1,
        format=fmt,
        content_type="text/html" if fmt == "html" else "text/plain",
        subject=subject,
        body=body,
        order_id="42",
    )


PluginFactory = Callable[..., tuple[EmailDelivery, ConfigHolder]]


@pytest.fixture
async def plugin_for(tmp_path: Path) -> AsyncIterator[PluginFactory]:
    """`plugin_for(server, settings={...}, **smtp_changes)` → (plugin, config holder)."""
    plugins: list[EmailDelivery] = []

    def make(
        server: SmtpTestServer, settings: Mapping[str, Any] | None = None, **smtp_changes: Any
    ) -> tuple[EmailDelivery, ConfigHolder]:
        holder = ConfigHolder(tmp_path, server.smtp_config(**smtp_changes))
        plugin = EmailDelivery(settings or {}, holder.context())
        plugins.append(plugin)
        return plugin, holder

    yield make
    for plugin in plugins:
        await plugin.close()


def test_registers_as_email() -> None:
    registered: dict[str, type] = {}
    postbackd_register_deliveries(lambda name, cls: registered.update({name: cls}))
    assert registered == {"email": EmailDelivery}


async def test_plain_delivery_reports_the_conversation(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    plugin, _ = plugin_for(smtp_server)
    options = {"to": ["Kunde <kunde@example.com>"], "cc": "cc@example.com", "bcc": ["b@x.org"]}

    outcome = await plugin.deliver(make_delivery(), options)

    assert outcome.kind is OutcomeKind.OK, outcome.error
    assert outcome.status == 250
    assert outcome.response == {"code": 250, "message": "2.0.0 OK queued as m1"}
    assert outcome.request is not None
    assert outcome.request["from"] == '"Example Print Co." <postbacks@example.com>'
    assert outcome.request["to"] == ["Kunde <kunde@example.com>"]
    assert outcome.request["subject"] == "Order 42 shipped"
    assert outcome.request["server"] == f"127.0.0.1:{smtp_server.port}"
    assert outcome.request["tls"] == "none"
    assert "password" not in outcome.request
    [mail] = smtp_server.received
    assert mail.mail_from == "postbacks@example.com"
    assert mail.rcpt_tos == ("kunde@example.com", "cc@example.com", "b@x.org")
    message = mail.message()
    assert message["To"] == "Kunde <kunde@example.com>"
    assert message["Cc"] == "cc@example.com"
    assert message["Bcc"] is None
    assert message.get_content() == "Your order 42 is on its way.\r\n"


async def test_headers_and_utf8_survive_the_trip(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    plugin, _ = plugin_for(smtp_server, from_name="Blåbær Trykk 🎉")
    delivery = make_delivery(
        subject="Ordre 42 er sendt – æøå 🚚", body="Hej Søren, din ordre er på vej 📦\n".encode()
    )
    options = {"to": "Søren Ærø <soren@example.com>", "reply_to": '"Support, Team" <s@x.org>'}

    outcome = await plugin.deliver(delivery, options)

    assert outcome.succeeded, outcome.error
    message = smtp_server.received[0].message()
    assert message["Subject"] == "Ordre 42 er sendt – æøå 🚚"
    assert message["From"] == "Blåbær Trykk 🎉 <postbacks@example.com>"
    assert message["To"] == "Søren Ærø <soren@example.com>"
    assert message["Reply-To"] == '"Support, Team" <s@x.org>'
    assert message["Message-ID"] == "<dlv-0001@example.com>"
    assert message["Date"].datetime is not None
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == "Hej Søren, din ordre er på vej 📦\r\n"
    mail = smtp_server.received[0]
    head, _, body = mail.data.partition(b"\r\n\r\n")
    assert head.isascii()  # RFC 2047 encoded-words: no SMTPUTF8 needed
    assert "BODY=8BITMIME" in mail.mail_options  # the server offers 8BITMIME: UTF-8 as it is
    assert message["Content-Transfer-Encoding"] == "8bit"
    assert body == "Hej Søren, din ordre er på vej 📦\r\n".encode()
    assert outcome.request is not None and outcome.request["body"] == "8BITMIME"
    assert outcome.request["size"] == len(mail.data)


async def test_utf8_goes_7bit_to_a_server_without_8bitmime(
    smtp_server_factory: ServerFactory, plugin_for: PluginFactory
) -> None:
    server = smtp_server_factory(eight_bit_mime=False)
    plugin, _ = plugin_for(server)
    html = "<p>Hej Søren, din ordre er på vej 📦</p>".encode()

    text = await plugin.deliver(make_delivery("dlv-a", body="Blåbær 🫐\n".encode()), TO)
    rich = await plugin.deliver(make_delivery("dlv-b", fmt="html", body=html), TO)

    assert text.succeeded, text.error
    assert rich.succeeded, rich.error
    first, second = server.received
    assert first.data.isascii() and second.data.isascii()
    assert "BODY=8BITMIME" not in first.mail_options + second.mail_options
    assert first.message().get_content() == "Blåbær 🫐\r\n"
    assert [part.get_content() for part in second.message().iter_parts()] == [
        "Hej Søren, din ordre er på vej 📦\r\n",
        html.decode() + "\r\n",
    ]


async def test_lines_starting_with_a_dot_arrive_intact(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    plugin, _ = plugin_for(smtp_server)

    outcome = await plugin.deliver(make_delivery(body=b".\n..\n.hidden\nend"), TO)

    assert outcome.succeeded, outcome.error
    assert smtp_server.received[0].message().get_content() == ".\r\n..\r\n.hidden\r\nend\r\n"


async def test_html_goes_out_as_multipart_alternative(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    plugin, _ = plugin_for(smtp_server)
    html = (
        "<html><head><style>p{color:red}</style></head><body><h1>Sendt</h1>"
        '<p>Spor pakken: <a href="https://track.example/42">her</a> æøå 🎉</p>'
        "<script>alert(1)</script></body></html>"
    )

    outcome = await plugin.deliver(make_delivery(fmt="html", body=html.encode()), TO)

    assert outcome.succeeded, outcome.error
    message = smtp_server.received[0].message()
    assert message.get_content_type() == "multipart/alternative"
    text, rich = list(message.iter_parts())
    assert text.get_content_type() == "text/plain"
    assert (
        text.get_content() == "Sendt\r\n\r\nSpor pakken: her (https://track.example/42) æøå 🎉\r\n"
    )
    assert rich.get_content_type() == "text/html"
    assert rich.get_content().replace("\r\n", "\n") == html + "\n"


async def test_json_body_is_sent_as_the_plain_text_body(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    plugin, _ = plugin_for(smtp_server)
    body = b'{"orderId": "42", "status": "shipped"}'

    outcome = await plugin.deliver(make_delivery(fmt="json", body=body), TO)

    assert outcome.succeeded, outcome.error
    message = smtp_server.received[0].message()
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == body.decode()


async def test_line_breaks_in_the_subject_cannot_inject_headers(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    plugin, _ = plugin_for(smtp_server)
    delivery = make_delivery(subject="Order 42\r\nBcc: victim@example.org\nX-Evil: 1")

    outcome = await plugin.deliver(delivery, TO)

    assert outcome.succeeded, outcome.error
    mail = smtp_server.received[0]
    message = mail.message()
    assert message["Subject"] == "Order 42 Bcc: victim@example.org X-Evil: 1"
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert mail.rcpt_tos == ("kunde@example.com",)


async def test_451_is_retried_and_the_retry_is_the_same_message(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    smtp_server.handler.data_replies = ["451 4.3.0 try again later", "451 4.3.0 still busy"]
    plugin, _ = plugin_for(smtp_server)
    delivery = make_delivery()

    first = await plugin.deliver(delivery, TO)
    second = await plugin.deliver(replace(delivery, attempt=2), TO)
    third = await plugin.deliver(replace(delivery, attempt=3), TO)

    assert [o.kind for o in (first, second, third)] == [
        OutcomeKind.RETRY,
        OutcomeKind.RETRY,
        OutcomeKind.OK,
    ]
    assert first.status == 451
    assert first.response is not None and first.response["message"] == "4.3.0 try again later"
    assert first.error is not None and "451 4.3.0 try again later" in first.error
    assert first.request is not None and third.request is not None
    assert first.request["message_id"] == third.request["message_id"] == "<dlv-0001@example.com>"
    [mail] = smtp_server.received
    assert mail.message()["Message-ID"] == "<dlv-0001@example.com>"
    assert smtp_server.sessions == 1  # a refused message leaves the session usable


async def test_550_for_every_recipient_is_permanent(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    smtp_server.handler.refuse["kunde@example.com"] = "550 5.1.1 mailbox unavailable"
    plugin, _ = plugin_for(smtp_server)

    outcome = await plugin.deliver(make_delivery(), TO)

    assert outcome.kind is OutcomeKind.FAIL
    assert outcome.status == 550
    assert outcome.response is not None
    assert outcome.response["code"] == 550
    assert outcome.response["message"] == "5.1.1 mailbox unavailable"
    assert outcome.error is not None and "kunde@example.com (550 5.1.1 mailbox unavailable)" in (
        outcome.error
    )
    assert outcome.breaker is False  # the server is fine; the address is not
    assert smtp_server.received == []


async def test_550_to_data_is_permanent(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    smtp_server.handler.data_replies = ["554 5.6.0 message content rejected"]
    plugin, _ = plugin_for(smtp_server)

    outcome = await plugin.deliver(make_delivery(), TO)

    assert outcome.kind is OutcomeKind.FAIL
    assert outcome.status == 554
    assert outcome.response is not None
    assert outcome.response["message"] == "5.6.0 message content rejected"


async def test_some_recipients_refused_is_ok_naming_them(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    smtp_server.handler.refuse["gone@example.com"] = "550 5.1.1 no such user"
    plugin, _ = plugin_for(smtp_server)

    outcome = await plugin.deliver(
        make_delivery(), {"to": ["kunde@example.com", "gone@example.com"]}
    )

    assert outcome.kind is OutcomeKind.OK
    assert outcome.detail is not None
    assert "refused: gone@example.com (550 5.1.1 no such user)" in outcome.detail
    assert outcome.response is not None
    assert outcome.response["refused"] == [
        {"recipient": "gone@example.com", "code": 550, "message": "5.1.1 no such user"}
    ]
    assert smtp_server.received[0].rcpt_tos == ("kunde@example.com",)


async def test_all_refused_with_a_4xx_among_them_is_retried(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    smtp_server.handler.refuse.update(
        {"a@example.com": "550 5.1.1 no such user", "b@example.com": "450 4.2.0 greylisted"}
    )
    plugin, _ = plugin_for(smtp_server)

    outcome = await plugin.deliver(make_delivery(), {"to": ["a@example.com", "b@example.com"]})

    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.status == 550


async def test_sender_refused_with_5xx_fails(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    smtp_server.handler.mail_actions = ["553 5.7.1 sender not owned by user"]
    plugin, _ = plugin_for(smtp_server)

    outcome = await plugin.deliver(make_delivery(), TO)

    assert outcome.kind is OutcomeKind.FAIL
    assert outcome.status == 553
    assert (
        outcome.error == "sender postbacks@example.com refused: 553 5.7.1 sender not owned by user"
    )


async def test_server_down_is_retried_then_sent_once_it_is_up(
    smtp_server_factory: ServerFactory, plugin_for: PluginFactory
) -> None:
    server = smtp_server_factory(start=False)
    plugin, _ = plugin_for(server)

    down = await plugin.deliver(make_delivery(), TO)
    await asyncio.to_thread(server.start)
    up = await plugin.deliver(make_delivery(), TO)

    assert down.kind is OutcomeKind.RETRY
    assert down.error is not None
    assert f"cannot connect to smtp://127.0.0.1:{server.port}" in down.error
    assert down.status is None
    assert up.succeeded, up.error
    assert len(server.received) == 1


async def test_starttls_with_a_trusted_self_signed_certificate(
    smtp_server_factory: ServerFactory, plugin_for: PluginFactory, tls_cert: TlsCert
) -> None:
    server = smtp_server_factory(tls="starttls", cert=tls_cert)
    plugin, _ = plugin_for(server, settings={"ca_file": str(tls_cert.cert)})

    outcome = await plugin.deliver(make_delivery(), TO)

    assert outcome.succeeded, outcome.error
    assert outcome.request is not None and outcome.request["tls"] == "starttls"
    assert len(server.received) == 1


async def test_starttls_ca_file_relative_to_the_conf_dir(
    smtp_server_factory: ServerFactory,
    plugin_for: PluginFactory,
    tls_cert: TlsCert,
    tmp_path: Path,
) -> None:
    (tmp_path / "smtp-ca.pem").write_bytes(tls_cert.cert.read_bytes())
    server = smtp_server_factory(tls="starttls", cert=tls_cert)
    plugin, _ = plugin_for(server, settings={"ca_file": "smtp-ca.pem"})

    outcome = await plugin.deliver(make_delivery(), TO)

    assert outcome.succeeded, outcome.error


async def test_untrusted_certificate_is_retried_with_a_hint(
    smtp_server_factory: ServerFactory, plugin_for: PluginFactory, tls_cert: TlsCert
) -> None:
    server = smtp_server_factory(tls="starttls", cert=tls_cert)
    plugin, _ = plugin_for(server)

    outcome = await plugin.deliver(make_delivery(), TO)

    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error is not None
    assert "certificate not trusted" in outcome.error
    assert "ca_file" in outcome.error
    assert server.received == []


async def test_a_missing_ca_file_is_retried_naming_the_setting(
    smtp_server_factory: ServerFactory, plugin_for: PluginFactory, tls_cert: TlsCert
) -> None:
    server = smtp_server_factory(tls="starttls", cert=tls_cert)
    plugin, holder = plugin_for(server, settings={"ca_file": "missing-ca.pem"})

    outcome = await plugin.deliver(make_delivery(), TO)
    steps = await plugin.check_server()

    missing = holder.config.conf_dir / "missing-ca.pem"
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error is not None
    assert outcome.error.startswith(f"[deliveries.email] ca_file {missing}: ")
    assert [(step.name, step.ok) for step in steps] == [("tls", False)]
    assert server.sessions == 0


async def test_starttls_required_but_not_offered_is_retried(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    plugin, _ = plugin_for(smtp_server, tls="starttls")

    outcome = await plugin.deliver(make_delivery(), TO)

    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error is not None and "does not offer STARTTLS" in outcome.error


async def test_implicit_tls(
    smtp_server_factory: ServerFactory, plugin_for: PluginFactory, tls_cert: TlsCert
) -> None:
    server = smtp_server_factory(tls="implicit", cert=tls_cert)
    plugin, _ = plugin_for(server, settings={"ca_file": str(tls_cert.cert)})

    first = await plugin.deliver(make_delivery("dlv-a"), TO)
    second = await plugin.deliver(make_delivery("dlv-b"), TO)

    assert first.succeeded, first.error
    assert second.succeeded, second.error
    assert len(server.received) == 2
    assert server.sessions == 1


@pytest.mark.parametrize(("exclude", "mechanism"), [((), "PLAIN"), (("PLAIN",), "LOGIN")])
async def test_auth_with_right_credentials(
    smtp_server_factory: ServerFactory,
    plugin_for: PluginFactory,
    exclude: tuple[str, ...],
    mechanism: str,
) -> None:
    server = smtp_server_factory(credentials={"mailer": "s3cret"}, auth_exclude=exclude)
    plugin, _ = plugin_for(server, username="mailer", password="s3cret")

    outcome = await plugin.deliver(make_delivery(), TO)

    assert outcome.succeeded, outcome.error
    assert server.handler.logins == [(mechanism, "mailer")]
    assert outcome.request is not None and outcome.request["username"] == "mailer"


async def test_wrong_password_is_retried_logged_once_and_a_fixed_password_applies(
    smtp_server_factory: ServerFactory, plugin_for: PluginFactory
) -> None:
    server = smtp_server_factory(credentials={"mailer": "s3cret"})
    plugin, holder = plugin_for(server, username="mailer", password="wrong")

    with structlog.testing.capture_logs() as logs:
        first = await plugin.deliver(make_delivery(), TO)
        second = await plugin.deliver(make_delivery(), TO)
    holder.set_smtp(replace(holder.config.smtp, password="s3cret"))
    third = await plugin.deliver(make_delivery(), TO)

    assert first.kind is second.kind is OutcomeKind.RETRY
    assert first.status == 535
    assert first.error is not None and first.error.startswith(
        f"SMTP authentication failed for mailer at 127.0.0.1:{server.port}: 535"
    )
    assert first.request is not None and "wrong" not in repr(first.request)
    events = [entry["event"] for entry in logs]
    assert events == [f"SMTP authentication failed for mailer at 127.0.0.1:{server.port}"]
    assert third.succeeded, third.error
    assert server.handler.logins == [("PLAIN", "mailer")]


async def test_new_recipients_and_server_settings_apply_at_the_next_attempt(
    smtp_server_factory: ServerFactory, plugin_for: PluginFactory
) -> None:
    old, new = smtp_server_factory(), smtp_server_factory()
    plugin, holder = plugin_for(old)
    delivery = make_delivery()

    await plugin.deliver(delivery, {"to": "first@example.com"})
    holder.set_smtp(new.smtp_config(from_address="orders@print.example", from_name="Print"))
    outcome = await plugin.deliver(delivery, {"to": "second@example.com"})

    assert outcome.succeeded, outcome.error
    assert plugin.destination({}) == f"smtp://127.0.0.1:{new.port}"
    [mail] = new.received
    assert mail.rcpt_tos == ("second@example.com",)
    assert mail.mail_from == "orders@print.example"
    message = mail.message()
    assert message["From"] == "Print <orders@print.example>"
    assert message["To"] == "second@example.com"
    assert message["Message-ID"] == "<dlv-0001@print.example>"


async def test_a_changed_password_opens_a_new_session(
    smtp_server_factory: ServerFactory, plugin_for: PluginFactory
) -> None:
    server = smtp_server_factory(credentials={"mailer": "old"})
    plugin, holder = plugin_for(server, username="mailer", password="old")
    assert (await plugin.deliver(make_delivery("dlv-a"), TO)).succeeded

    assert server.credentials is not None
    server.credentials["mailer"] = "new"
    holder.set_smtp(replace(holder.config.smtp, password="new"))
    outcome = await plugin.deliver(make_delivery("dlv-b"), TO)

    assert outcome.succeeded, outcome.error
    assert server.sessions == 2
    assert server.handler.logins == [("PLAIN", "mailer"), ("PLAIN", "mailer")]


async def test_sessions_idle_too_long_are_not_reused(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin, _ = plugin_for(smtp_server)
    assert (await plugin.deliver(make_delivery("dlv-a"), TO)).succeeded

    monkeypatch.setattr(smtp_pool, "MAX_IDLE", 0.0)
    outcome = await plugin.deliver(make_delivery("dlv-b"), TO)

    assert outcome.succeeded, outcome.error
    assert smtp_server.sessions == 2


async def test_fifty_postbacks_reuse_a_few_connections(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    plugin, _ = plugin_for(smtp_server)
    deliveries = [make_delivery(f"dlv-{n:03}") for n in range(50)]

    outcomes = await asyncio.gather(*(plugin.deliver(d, TO) for d in deliveries[:30]))
    outcomes += [await plugin.deliver(d, TO) for d in deliveries[30:]]

    assert all(o.succeeded for o in outcomes), [o.error for o in outcomes if o.error]
    assert len(smtp_server.received) == 50
    assert smtp_server.sessions <= 5
    assert plugin.sessions_opened == smtp_server.sessions


async def test_connections_closed_by_the_server_are_reopened(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    plugin, _ = plugin_for(smtp_server)
    assert (await plugin.deliver(make_delivery("dlv-a"), TO)).succeeded

    await asyncio.to_thread(smtp_server.drop_connections)
    outcome = await plugin.deliver(make_delivery("dlv-b"), TO)

    assert outcome.succeeded, outcome.error
    assert smtp_server.sessions == 2


@pytest.mark.parametrize("action", ["421", "drop"])
async def test_a_reused_connection_lost_mid_attempt_is_reconnected_once(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory, action: str
) -> None:
    plugin, _ = plugin_for(smtp_server)
    assert (await plugin.deliver(make_delivery("dlv-a"), TO)).succeeded
    smtp_server.handler.mail_actions = [action]

    outcome = await plugin.deliver(make_delivery("dlv-b"), TO)

    assert outcome.succeeded, outcome.error
    assert smtp_server.sessions == 2
    assert [m.message()["Message-ID"] for m in smtp_server.received] == [
        "<dlv-a@example.com>",
        "<dlv-b@example.com>",
    ]


async def test_a_fresh_connection_lost_is_not_reconnected(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    smtp_server.handler.mail_actions = ["421"]
    plugin, _ = plugin_for(smtp_server)

    outcome = await plugin.deliver(make_delivery(), TO)

    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.status == 421
    assert smtp_server.sessions == 1


async def test_bad_options_fail_and_a_bad_sender_waits(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    plugin, holder = plugin_for(smtp_server)

    bad_options = await plugin.deliver(make_delivery(), {"to": "bob@"})
    holder.set_smtp(replace(holder.config.smtp, from_address="not-an-address"))
    bad_sender = await plugin.deliver(make_delivery(), TO)

    assert bad_options.kind is OutcomeKind.FAIL
    assert (
        bad_options.error
        == "trigger 'acme-shipped-mail': options.to: 'bob@' is not an email address"
    )
    assert bad_sender.kind is OutcomeKind.RETRY
    assert bad_sender.error is not None
    assert "[smtp] from_address 'not-an-address' is not an email address" in bad_sender.error
    assert smtp_server.sessions == 0


async def test_close_quits_pooled_connections(
    smtp_server: SmtpTestServer, plugin_for: PluginFactory
) -> None:
    plugin, _ = plugin_for(smtp_server)
    assert (await plugin.deliver(make_delivery(), TO)).succeeded

    await plugin.close()

    for _ in range(200):
        if not smtp_server.live_sessions:
            break
        await asyncio.sleep(0.01)
    assert smtp_server.live_sessions == 0


def test_settings_are_validated(tmp_path: Path) -> None:
    holder = ConfigHolder(tmp_path, SmtpTestServer(port=1).smtp_config())
    with pytest.raises(ValueError) as caught:
        EmailDelivery({"cafile": "x.pem", "pool_size": 0}, holder.context())
    assert str(caught.value).splitlines() == [
        '[deliveries.email] cafile: unknown key "cafile" (did you mean "ca_file"?)',
        "[deliveries.email] pool_size: must be at least 1, got 0",
    ]
