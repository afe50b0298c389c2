"""One SMTP session with aiosmtplib: open (connect, TLS, AUTH) and run a mail transaction.

Every failure is turned into an `SmtpFailure` that names the phase it happened in and the
server's reply, because the delivery's retry policy depends on both: a 5xx to RCPT is the
message's fault (permanent), a 5xx to AUTH is the settings' fault (retried until fixed).
`SMTPServerDisconnected` is let through unchanged from `send_transaction`, so the pool can
tell "the server closed an idle connection" apart and reconnect once.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from enum import StrEnum

import aiosmtplib

from postbackd.config import SmtpConfig

SERVICE_CLOSING = 421
_OK = 250
_RCPT_OK = (250, 251)  # 251: user not local, will forward


class Phase(StrEnum):
    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


@dataclass(frozen=True)
class Refusal:
    """A recipient the server refused, with its reply."""

    recipient: str
    code: int
    message: str

    def __str__(self) -> str:
        return f"{self.recipient} ({self.code} {self.message})"


class SmtpFailure(Exception):
    """An SMTP session or transaction failed in `phase`; `code` is the server's reply, if any."""

    def __init__(
        self,
        phase: Phase,
        message: str,
        *,
        code: int | None = None,
        reply: str = "",
        refused: tuple[Refusal, ...] = (),
    ) -> None:
        super().__init__(message)
        self.phase = phase
        self.message = message
        self.code = code
        self.reply = reply
        self.refused = refused

    @property
    def permanent(self) -> bool:
        """A 5xx about this message (sender, recipients, content): retrying cannot help.

        Failures while connecting, negotiating TLS or logging in are about the server or our
        settings (e.g. 535 wrong password), never permanent: the admin can fix them.
        """
        if self.phase not in (Phase.MAIL, Phase.RCPT, Phase.DATA):
            return False
        if self.refused:
            return all(500 <= refusal.code < 600 for refusal in self.refused)
        return self.code is not None and 500 <= self.code < 600

    @classmethod
    def from_reply(cls, phase: Phase, text: str, code: int, message: str) -> SmtpFailure:
        """A failure the server stated: "<text>: <code> <message>", the reply kept apart."""
        return cls(phase, f"{text}: {code} {message}", code=code, reply=message)


@dataclass(frozen=True)
class SendResult:
    """The server accepted the message (for at least one recipient)."""

    code: int
    message: str
    size: int  # octets of the message sent
    eight_bit: bool  # sent as 8-bit content (BODY=8BITMIME)
    refused: tuple[Refusal, ...] = field(default=())


def server_name(smtp: SmtpConfig) -> str:
    return f"{smtp.host}:{smtp.port}"


def _tls_hint(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate not trusted: {exc.verify_message or exc}; for a private CA set "
            "[deliveries.email] ca_file"
        )
    return f"TLS failed: {exc}"


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def open_session(
    smtp: SmtpConfig,
    *,
    tls_context: ssl.SSLContext | None,
    local_hostname: str | None,
) -> aiosmtplib.SMTP:
    """A connected, TLS-secured (as configured) and logged-in client; raises `SmtpFailure`."""
    where = f"smtp://{server_name(smtp)}"
    client = aiosmtplib.SMTP(
        hostname=smtp.host,
        port=smtp.port,
        timeout=smtp.timeout,
        use_tls=smtp.tls == "implicit",
        start_tls=False,
        tls_context=tls_context if smtp.tls != "none" else None,
        local_hostname=local_hostname,
    )
    try:
        await _connect(client, smtp, where)
        if smtp.tls == "starttls":
            await _starttls(client, smtp, where, tls_context)
        if smtp.username:
            await _login(client, smtp, where)
    except BaseException:
        client.close()
        raise
    return client


async def _connect(client: aiosmtplib.SMTP, smtp: SmtpConfig, where: str) -> None:
    try:
        await client.connect()
        await client.ehlo()
    except aiosmtplib.SMTPResponseException as exc:
        raise SmtpFailure.from_reply(
            Phase.CONNECT, f"{where} refused the session", exc.code, exc.message
        ) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        cause = _ssl_cause(exc)
        if cause is not None and smtp.tls == "implicit":
            raise SmtpFailure(Phase.TLS, f"{where}: {_tls_hint(cause)}") from exc
        raise SmtpFailure(Phase.CONNECT, f"cannot connect to {where}: {exc}") from exc


async def _starttls(
    client: aiosmtplib.SMTP, smtp: SmtpConfig, where: str, tls_context: ssl.SSLContext | None
) -> None:
    if not client.supports_extension("starttls"):
        raise SmtpFailure(
            Phase.TLS,
            f'{where} does not offer STARTTLS; set [smtp] tls = "implicit" (port 465) or '
            '"none" if the server really has no TLS',
        )
    try:
        await client.starttls(tls_context=tls_context)
        await client.ehlo()
    except aiosmtplib.SMTPResponseException as exc:
        raise SmtpFailure.from_reply(
            Phase.TLS, f"{where} refused STARTTLS", exc.code, exc.message
        ) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        cause = _ssl_cause(exc)
        message = _tls_hint(cause) if cause else f"STARTTLS failed: {exc}"
        raise SmtpFailure(Phase.TLS, f"{where}: {message}") from exc


async def _login(client: aiosmtplib.SMTP, smtp: SmtpConfig, where: str) -> None:
    username = smtp.username or ""
    try:
        await client.login(username, smtp.password or "")
    except aiosmtplib.SMTPResponseException as exc:
        raise SmtpFailure.from_reply(
            Phase.AUTH,
            f"SMTP authentication failed for {username} at {server_name(smtp)}",
            exc.code,
            exc.message,
        ) from exc
    except aiosmtplib.SMTPServerDisconnected:
        raise
    except aiosmtplib.SMTPException as exc:
        raise SmtpFailure(Phase.AUTH, f"{where}: cannot log in as {username}: {exc}") from exc


async def send_transaction(
    client: aiosmtplib.SMTP,
    sender: str,
    recipients: tuple[str, ...],
    data: bytes,
    *,
    eight_bit: bool = False,
) -> SendResult:
    """MAIL FROM, RCPT TO for each recipient, DATA. Raises `SmtpFailure` on a refusal.

    `sender` and `recipients` are addr-specs checked by our own grammar (email_options.py),
    so MAIL and RCPT are written directly rather than through aiosmtplib's `mail`/`rcpt`,
    which parse every address again with `email.utils.parseaddr`. `eight_bit` marks 8-bit
    content (BODY=8BITMIME). A refusal leaves the session usable (RSET is sent), so the
    connection can go back to the pool. `SMTPServerDisconnected` and timeouts propagate.
    """
    mail = [b"FROM:<" + sender.encode("ascii") + b">"]
    if client.supports_extension("size"):
        mail.append(b"SIZE=%d" % len(data))
    if eight_bit:
        mail.append(b"BODY=8BITMIME")
    response = await client.execute_command(b"MAIL", *mail)
    if response.code != _OK:
        await _reset(client)
        raise SmtpFailure.from_reply(
            Phase.MAIL, f"sender {sender} refused", response.code, response.message
        )
    refused: list[Refusal] = []
    for recipient in recipients:
        response = await client.execute_command(b"RCPT", b"TO:<" + recipient.encode("ascii") + b">")
        if response.code not in _RCPT_OK:
            refused.append(Refusal(recipient, response.code, response.message))
    if len(refused) == len(recipients):
        await _reset(client)
        first = refused[0]
        raise SmtpFailure(
            Phase.RCPT,
            "all recipients refused: " + ", ".join(str(r) for r in refused),
            code=first.code,
            reply=first.message,
            refused=tuple(refused),
        )
    try:
        response = await client.data(data)
    except aiosmtplib.SMTPResponseException as exc:
        await _reset(client)
        raise SmtpFailure.from_reply(Phase.DATA, "message refused", exc.code, exc.message) from exc
    return SendResult(
        code=response.code,
        message=response.message,
        size=len(data),
        eight_bit=eight_bit,
        refused=tuple(refused),
    )


async def _reset(client: aiosmtplib.SMTP) -> None:
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
