"""The SMTP checklist behind `postbackd check --connect` and `postbackd test`.

"Mail doesn't go out" has five usual causes, and the fix differs for each: the host name does
not resolve (dns), nothing listens on the port or a firewall drops it (tcp), the TLS mode or
certificate is wrong (tls), the password is wrong (auth), the server will not send as our
from_address (sender). `check_smtp` walks them in order and stops at the first that fails, so
the admin reads exactly which one to fix. It sends no mail: MAIL FROM is followed by RSET.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import aiosmtplib

from postbackd.config import SmtpConfig
from postbackd.plugin import Outcome

StepName = Literal["dns", "tcp", "tls", "auth", "sender"]


@dataclass(frozen=True)
class CheckStep:
    """One step of the checklist and what came of it."""

    name: StepName
    ok: bool
    detail: str


class _Stop(Exception):
    """The step just recorded failed; later steps cannot run."""


def _cause_text(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate not trusted: {seen.verify_message or seen}"
        if isinstance(seen, ssl.SSLError):
            return f"TLS error: {seen.reason or seen}"
        seen = seen.__cause__
    return str(exc) or type(exc).__name__


class _Checklist:
    def __init__(self, smtp: SmtpConfig, tls_context: ssl.SSLContext | None) -> None:
        self.smtp = smtp
        self.where = f"{smtp.host}:{smtp.port}"
        self.tls_context = tls_context
        self.steps: list[CheckStep] = []
        self.client: aiosmtplib.SMTP | None = None

    def passed(self, name: StepName, detail: str) -> None:
        self.steps.append(CheckStep(name, True, detail))

    def fail(self, name: StepName, detail: str) -> NoReturn:
        self.steps.append(CheckStep(name, False, detail))
        raise _Stop

    async def run(self) -> list[CheckStep]:
        try:
            await self.dns()
            await self.tcp()
            await self.tls()
            await self.auth()
            await self.sender()
        except _Stop:
            pass
        finally:
            if self.client is not None:
                await _quit(self.client)
        return self.steps

    async def dns(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(self.smtp.host, self.smtp.port, type=socket.SOCK_STREAM),
                self.smtp.timeout,
            )
        except (OSError, TimeoutError) as exc:
            self.fail("dns", f"cannot resolve {self.smtp.host!r}: {_cause_text(exc)}")
        addresses = sorted({str(info[4][0]) for info in infos})
        self.passed("dns", f"{self.smtp.host} → {', '.join(addresses)}")

    async def tcp(self) -> None:
        if self.smtp.tls == "implicit":
            await self._raw_tcp()
            return
        self.client = self._client()
        try:
            greeting = await self.client.connect()
            await self.client.ehlo()
        except aiosmtplib.SMTPResponseException as exc:
            self.fail("tcp", f"{self.where} answered {exc.code} {exc.message}")
        except (aiosmtplib.SMTPException, OSError) as exc:
            self.fail("tcp", f"cannot connect to {self.where}: {_cause_text(exc)}")
        self.passed("tcp", f"connected to {self.where}: {greeting.code} {greeting.message}")

    async def _raw_tcp(self) -> None:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self.smtp.host, self.smtp.port), self.smtp.timeout
            )
        except (OSError, TimeoutError) as exc:
            self.fail("tcp", f"cannot connect to {self.where}: {_cause_text(exc)}")
        writer.close()
        self.passed("tcp", f"connected to {self.where}")

    async def tls(self) -> None:
        if self.smtp.tls == "none":
            self.passed("tls", 'not used: [smtp] tls = "none" (mail and password in clear)')
            return
        context = self.tls_context
        if context is None:
            context = await asyncio.to_thread(_system_trust)
        try:
            if self.smtp.tls == "implicit":
                self.client = self._client(context)
                await self.client.connect()
                await self.client.ehlo()
            else:
                assert self.client is not None
                if not self.client.supports_extension("starttls"):
                    self.fail(
                        "tls",
                        f'{self.where} does not offer STARTTLS; try tls = "implicit" (port '
                        '465) or "none"',
                    )
                await self.client.starttls(tls_context=context)
                await self.client.ehlo()
        except aiosmtplib.SMTPResponseException as exc:
            self.fail("tls", f"{self.where} answered {exc.code} {exc.message}")
        except (aiosmtplib.SMTPException, OSError) as exc:
            self.fail("tls", f"{self.smtp.tls} with {self.where}: {_cause_text(exc)}")
        assert self.client is not None
        cipher = self.client.get_transport_info("cipher")
        version = cipher[1] if cipher else "TLS"
        verified = context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        trust = "certificate verified" if verified else "certificate NOT verified"
        self.passed("tls", f"{self.smtp.tls}: {version}, {trust}")

    async def auth(self) -> None:
        assert self.client is not None
        if not self.smtp.username:
            self.passed("auth", "no [smtp] username: not logging in")
            return
        try:
            await self.client.login(self.smtp.username, self.smtp.password or "")
        except aiosmtplib.SMTPResponseException as exc:
            self.fail(
                "auth",
                f"SMTP authentication failed for {self.smtp.username} at {self.where}: "
                f"{exc.code} {exc.message}",
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            self.fail("auth", f"cannot log in at {self.where}: {_cause_text(exc)}")
        self.passed("auth", f"logged in as {self.smtp.username}")

    async def sender(self) -> None:
        assert self.client is not None
        address = self.smtp.from_address
        try:
            response = await self.client.mail(address)
            await self.client.rset()
        except aiosmtplib.SMTPResponseException as exc:
            self.fail("sender", f"MAIL FROM:<{address}> refused: {exc.code} {exc.message}")
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            self.fail("sender", f"MAIL FROM:<{address}> failed: {_cause_text(exc)}")
        self.passed("sender", f"MAIL FROM:<{address}> accepted: {response.code}")

    def _client(self, context: ssl.SSLContext | None = None) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.smtp.host,
            port=self.smtp.port,
            timeout=self.smtp.timeout,
            use_tls=context is not None,
            start_tls=False,
            tls_context=context,
        )


def _system_trust() -> ssl.SSLContext:
    return ssl.create_default_context()


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await asyncio.wait_for(client.quit(), 2.0)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        client.close()


async def check_smtp(
    smtp: SmtpConfig, *, tls_context: ssl.SSLContext | None = None
) -> list[CheckStep]:
    """Walk dns → tcp → tls → auth → sender against `smtp`; the list ends at the first failure.

    `tls_context` is the trust anchor to verify the server with (default: the system store).
    A step that does not apply (tls = "none", no username) is reported ok with a note.
    """
    return await _Checklist(smtp, tls_context).run()


def format_check(steps: list[CheckStep]) -> str:
    """The checklist as lines for a terminal: `ok   tcp     connected to ...`."""
    return "\n".join(f"{'ok' if s.ok else 'FAIL':<5}{s.name:<8}{s.detail}" for s in steps)


def format_smtp_summary(outcome: Outcome) -> str:
    """What `postbackd test` shows of one email attempt: the envelope, the server's answer."""
    request: Mapping[str, Any] = outcome.request or {}
    response: Mapping[str, Any] = outcome.response or {}
    lines = [
        f"server   smtp://{request.get('server', '?')} (tls: {request.get('tls', '?')})",
        f"from     {request.get('from', '')}",
        f"to       {', '.join(request.get('to', []))}",
    ]
    for key in ("cc", "bcc", "reply_to"):
        if request.get(key):
            lines.append(f"{key:<9}{', '.join(request[key])}")
    lines.append(f"subject  {request.get('subject', '')}")
    if request.get("message_id"):
        lines.append(f"msg-id   {request['message_id']}")
    if response:
        lines.append(f"reply    {response.get('code')} {response.get('message', '')}".rstrip())
        for refusal in response.get("refused", []):
            lines.append(f"refused  {refusal['recipient']}: {refusal['code']} {refusal['message']}")
    verdict = {"ok": "sent", "retry": "will retry", "fail": "failed for good"}[outcome.kind]
    lines.append(f"result   {verdict}" + (f": {outcome.error}" if outcome.error else ""))
    return "\n".join(lines)
