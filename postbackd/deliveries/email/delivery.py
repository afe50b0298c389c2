"""The built-in email delivery: postbacks as mail through the PSP's own SMTP server.

Registered as "email". The [smtp] settings are read from the current config at every attempt
(a fixed password or host applies to mail waiting for a retry); the trigger options name the
recipients. Plugin settings, `[deliveries.email]`:

    ca_file   = "certs/smtp-ca.pem"   # trust anchor for the server's certificate (replaces
                                      # the system store; relative to the conf.d directory)
    pool_size = 4                     # sessions kept open per SMTP server
    helo_name = "mail.example.com"    # the EHLO name (default: this host's FQDN)

Failure policy: a 5xx to MAIL, RCPT (every recipient) or DATA is permanent (dead at once); a
failure to connect, negotiate TLS or log in — 535 included — is retried, since the admin can
fix the settings; 4xx, timeouts and lost connections are retried. Some recipients refused and
others accepted is a success whose detail names the refused ones. html bodies go out as
multipart/alternative with a derived text part; json and xml bodies as the text/plain body.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiosmtplib

from postbackd.config import SmtpConfig, Trigger
from postbackd.deliveries.email.message import (
    Addressing,
    AddressingCache,
    ComposedMessage,
    MessageComposer,
)
from postbackd.deliveries.email.options import TEMPLATE_OPTIONS, SenderError, validate_options
from postbackd.deliveries.email.pool import (
    DEFAULT_POOL_SIZE,
    SmtpPool,
    SmtpPools,
    settings_fingerprint,
)
from postbackd.deliveries.email.session import (
    SERVICE_CLOSING,
    Phase,
    SendResult,
    SmtpFailure,
    open_session,
    send_transaction,
    server_name,
)
from postbackd.deliveries.email.smtpcheck import CheckStep, check_smtp, format_smtp_summary
from postbackd.logs import get_logger
from postbackd.plugin import (
    ConnectionCheck,
    Delivery,
    Outcome,
    PluginContext,
    SettingsReader,
    read_mapping,
)

log = get_logger("postbackd.deliveries.email")

SETTINGS = ("ca_file", "pool_size", "helo_name")


@dataclass(frozen=True)
class EmailSettings:
    """The `[deliveries.email]` table, read."""

    ca_file: Path | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    helo_name: str | None = None


class _Reconnect(Exception):
    """A reused session turned out to be closed by the server: try once on a fresh one."""


class EmailDelivery:
    """Sends each delivery as an email; see the module docstring for settings and policy."""

    # to, cc, bcc and reply_to may be templates (``to = "{{ shipTo.email }}"``): the daemon
    # renders them from the event at each attempt and judges them by `validate_options`.
    template_options = TEMPLATE_OPTIONS

    def __init__(self, settings: Mapping[str, Any], context: PluginContext) -> None:
        self.settings = read_mapping(self.read_settings, settings, "[deliveries.email]")
        self._context = context
        self._composer = MessageComposer()
        self._addressing = AddressingCache()
        self._pools = SmtpPools(self.settings.pool_size, self._open)
        self._tls: ssl.SSLContext | None = None
        self._tls_lock = asyncio.Lock()
        self._local_hostname = self.settings.helo_name
        self._auth_failure_logged: str | None = None

    # ------------------------------------------------------------ the plugin interface

    @classmethod
    def read_settings(cls, reader: SettingsReader) -> EmailSettings:
        """Read ``[deliveries.email]`` (see the module docstring)."""
        reader.check_keys(SETTINGS)
        # not path_value: a relative ca_file given without a file (a test's settings dict)
        # resolves against the configuration directory when used (`_ca_file`); from a table
        # it is already absolute
        ca_file = reader.string("ca_file")
        if ca_file is not None and not ca_file.strip():
            reader.error("expected a file path, got an empty string", "ca_file")
            ca_file = None
        helo_name = reader.string("helo_name")
        if helo_name is not None and not (helo_name.strip() and helo_name.isascii()):
            reader.error(
                f"expected an ASCII host name, got {reader.shown('helo_name')}", "helo_name"
            )
            helo_name = None
        return EmailSettings(
            ca_file=Path(ca_file) if ca_file else None,
            pool_size=reader.integer("pool_size", DEFAULT_POOL_SIZE),
            helo_name=helo_name,
        )

    def validate_options(self, options: Mapping[str, Any]) -> list[str]:
        return validate_options(options)

    def destination(self, options: Mapping[str, Any]) -> str:
        smtp = self._context.config().smtp
        return f"smtp://{server_name(smtp)}"

    async def deliver(self, delivery: Delivery, options: Mapping[str, Any]) -> Outcome:
        smtp = self._context.config().smtp
        try:
            addressing = self._addressing.get(smtp, options)
        except SenderError as exc:
            return Outcome.retry(f"{exc}; the mail goes once it is fixed", breaker=False)
        except ValueError as exc:
            return Outcome.fail(f"trigger {delivery.trigger!r}: {exc}", breaker=False)
        message = self._composer.compose(delivery, addressing)
        pool = self._pools.pool_for(smtp)
        try:
            try:
                result = await self._send_once(pool, smtp, message, may_reconnect=True)
            except _Reconnect:
                result = await self._send_once(pool, smtp, message, may_reconnect=False)
        except SmtpFailure as failure:
            return self._failure_outcome(failure, smtp, _request(smtp, addressing, message))
        except (aiosmtplib.SMTPException, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            request = _request(smtp, addressing, message)
            return Outcome.retry(f"smtp://{server_name(smtp)}: {reason}", request=request)
        self._auth_failure_logged = None
        return _ok_outcome(result, smtp, message, _request(smtp, addressing, message, result))

    async def close(self) -> None:
        await self._pools.close()

    # ------------------------------------------------------------ extras for the CLI

    async def check_connections(self, triggers: Sequence[Trigger]) -> list[ConnectionCheck]:
        """`check --connect`: the SMTP checklist, once for all `triggers` (they share the server),
        after a line for the server as a whole."""
        if not triggers:
            return []
        smtp = self._context.config().smtp
        steps = await self.check_server()
        server = ConnectionCheck(all(s.ok for s in steps), f"smtp    {smtp.host}:{smtp.port}")
        return [server, *(ConnectionCheck(s.ok, f"{s.name:<8}{s.detail}") for s in steps)]

    async def check_server(self) -> list[CheckStep]:
        """The SMTP checklist (dns, tcp, tls, auth, sender) with this plugin's trust anchor."""
        smtp = self._context.config().smtp
        context = None
        if smtp.tls != "none":
            try:
                context = await self.tls_context()
            except (OSError, ssl.SSLError) as exc:
                return [
                    CheckStep("tls", False, f"[deliveries.email] ca_file {self._ca_file()}: {exc}")
                ]
        return await check_smtp(smtp, tls_context=context)

    def test_summary(self, outcome: Outcome) -> str | None:
        """What `postbackd test` shows of a sent email: the envelope and the server's answer."""
        return format_smtp_summary(outcome) if (outcome.request or {}).get("server") else None

    async def tls_context(self) -> ssl.SSLContext:
        """The one SSLContext shared by every session (built off the event loop, once)."""
        async with self._tls_lock:
            if self._tls is None:
                self._tls = await asyncio.to_thread(_build_tls_context, self._ca_file())
            return self._tls

    @property
    def sessions_opened(self) -> int:
        """SMTP sessions opened so far (a burst of mail should open few)."""
        return self._pools.opened

    # ------------------------------------------------------------ internals

    def _ca_file(self) -> Path | None:
        ca_file = self.settings.ca_file
        if ca_file is None or ca_file.is_absolute():
            return ca_file
        return self._context.config().conf_dir / ca_file

    async def _open(self, smtp: SmtpConfig) -> aiosmtplib.SMTP:
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        context = None
        if smtp.tls != "none":
            try:
                context = await self.tls_context()
            except (OSError, ssl.SSLError) as exc:
                raise SmtpFailure(
                    Phase.TLS, f"[deliveries.email] ca_file {self._ca_file()}: {exc}"
                ) from exc
        return await open_session(smtp, tls_context=context, local_hostname=self._local_hostname)

    async def _send_once(
        self, pool: SmtpPool, smtp: SmtpConfig, message: ComposedMessage, *, may_reconnect: bool
    ) -> SendResult:
        session = await pool.acquire(smtp, fresh=not may_reconnect)
        data, eight_bit = message.for_server(session.client.supports_extension("8bitmime"))
        try:
            result = await send_transaction(
                session.client, message.sender, message.recipients, data, eight_bit=eight_bit
            )
        except SmtpFailure as failure:
            closing = failure.code == SERVICE_CLOSING
            pool.release(session, reusable=not closing)
            if closing and session.reused and may_reconnect:
                raise _Reconnect from failure
            raise
        except aiosmtplib.SMTPServerDisconnected as exc:
            pool.release(session, reusable=False)
            if session.reused and may_reconnect:
                raise _Reconnect from exc
            raise
        except BaseException:
            pool.release(session, reusable=False)
            raise
        pool.release(session, reusable=True)
        return result

    def _failure_outcome(
        self, failure: SmtpFailure, smtp: SmtpConfig, request: Mapping[str, Any]
    ) -> Outcome:
        if failure.phase is Phase.AUTH:
            self._log_auth_failure(failure, smtp)
        response = None
        if failure.code is not None:
            response = {"code": failure.code, "message": failure.reply, "phase": failure.phase}
            if failure.refused:
                response["refused"] = [asdict(refusal) for refusal in failure.refused]
        if failure.permanent:
            return Outcome.fail(
                failure.message,
                status=failure.code,
                request=request,
                response=response,
                breaker=False,
            )
        return Outcome.retry(
            failure.message, status=failure.code, request=request, response=response
        )

    def _log_auth_failure(self, failure: SmtpFailure, smtp: SmtpConfig) -> None:
        fingerprint = settings_fingerprint(smtp)
        if fingerprint == self._auth_failure_logged:
            return
        self._auth_failure_logged = fingerprint
        log.warning(
            f"SMTP authentication failed for {smtp.username} at {server_name(smtp)}",
            code=failure.code,
            reply=failure.reply,
            location=str(smtp.location) if smtp.location else None,
            hint="fix [smtp] username/password; waiting mail is retried",
        )


def _build_tls_context(ca_file: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def _request(
    smtp: SmtpConfig,
    addressing: Addressing,
    message: ComposedMessage,
    sent: SendResult | None = None,
) -> dict[str, Any]:
    """The request log entry; the size is that of the form sent (else of the 7-bit form)."""
    recipients = addressing.recipients
    request: dict[str, Any] = {
        "from": str(addressing.sender),
        "to": [str(mailbox) for mailbox in recipients.to],
        "subject": message.subject,
        "server": server_name(smtp),
        "tls": smtp.tls,
    }
    for key in ("cc", "bcc", "reply_to"):
        mailboxes = getattr(recipients, key)
        if mailboxes:
            request[key] = [str(mailbox) for mailbox in mailboxes]
    if smtp.username:
        request["username"] = smtp.username
    request["message_id"] = message.message_id
    request["size"] = sent.size if sent else len(message.head) + len(message.body.seven_bit)
    if sent and sent.eight_bit:
        request["body"] = "8BITMIME"
    return request


def _ok_outcome(
    result: SendResult, smtp: SmtpConfig, message: ComposedMessage, request: Mapping[str, Any]
) -> Outcome:
    response: dict[str, Any] = {"code": result.code, "message": result.message}
    accepted = [r for r in message.recipients if r not in {x.recipient for x in result.refused}]
    detail = f"{result.code} accepted by smtp://{server_name(smtp)} for {', '.join(accepted)}"
    if result.refused:
        response["refused"] = [asdict(refusal) for refusal in result.refused]
        detail += "; refused: " + ", ".join(str(refusal) for refusal in result.refused)
    return Outcome.ok(detail, status=result.code, request=request, response=response)
