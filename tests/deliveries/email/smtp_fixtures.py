"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, a random free port, scripted replies.

Import the fixtures into a test module (and list them in its ``__all__``):
`smtp_server` (plain, no auth), `smtp_server_factory` (TLS modes, AUTH, a chosen port,
started later, without 8BITMIME) and `tls_cert` (a self-signed certificate for 127.0.0.1 and
localhost, made with `openssl` once per session). `ConfigHolder` builds a minimal `Config`
around an `SmtpConfig` and lets a test swap it between attempts, as a hot reload would.

The server runs in aiosmtpd's own thread; it counts sessions (TCP connections, not STARTTLS
upgrades), records every accepted message, and answers from scripts:
`handler.data_replies = ["451 4.3.0 try later"]` answers the next DATA so, `refuse` maps a
recipient to its RCPT reply, `mail_actions = ["421"]` makes the next MAIL answer 421 and close
the connection ("drop" closes it without a word; any other entry is the reply itself).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from postbackd.config.model import Config, DaemonConfig, SmtpConfig, UiConfig
from postbackd.plugin import PluginContext

ServerTls = Literal["none", "starttls", "implicit"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsCert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


def make_tls_cert(directory: Path) -> TlsCert:
    """A self-signed certificate for 127.0.0.1 and localhost, valid for 100 years."""
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "36500",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return TlsCert(cert, key)


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()  # MAIL FROM parameters, e.g. "BODY=8BITMIME"

    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """Stores accepted mail; answers MAIL, RCPT and DATA from the scripts described above."""

    received: list[ReceivedMail] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    mail_actions: list[str] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)  # (mechanism, user) accepted

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        action = self.mail_actions.pop(0) if self.mail_actions else None
        if action is not None:
            transport = server.transport
            assert isinstance(transport, asyncio.Transport)
            if action == "drop":
                transport.abort()
                return "250 OK"
            if action == "421":
                server.loop.call_soon(transport.close)
                return "421 4.4.2 closing idle connection"
            return action
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.refuse.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        content = envelope.original_content or b""
        self.received.append(
            ReceivedMail(
                str(envelope.mail_from),
                tuple(envelope.rcpt_tos),
                bytes(content),
                tuple(envelope.mail_options),
            )
        )
        return f"250 2.0.0 OK queued as m{len(self.received)}"


class _SessionCounter:
    def __init__(self) -> None:
        self.opened = 0
        self.live: set[SMTP] = set()
        self.lock = threading.Lock()


class _CountingSMTP(SMTP):
    def __init__(self, handler: Any, counter: _SessionCounter, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._counter = counter

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._original_transport is None  # not the STARTTLS upgrade of a session
        super().connection_made(transport)
        if first:
            with self._counter.lock:
                self._counter.opened += 1
                self._counter.live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        with self._counter.lock:
            self._counter.live.discard(self)


class _Controller(Controller):
    def __init__(self, handler: Any, counter: _SessionCounter, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._counter = counter

    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, self._counter, **self.SMTP_kwargs)


class SmtpTestServer:
    """aiosmtpd on 127.0.0.1:`port`; `start`/`stop` may be called repeatedly (same port)."""

    def __init__(
        self,
        *,
        port: int,
        tls: ServerTls = "none",
        cert: TlsCert | None = None,
        credentials: dict[str, str] | None = None,
        auth_exclude: tuple[str, ...] = (),
        eight_bit_mime: bool = True,
    ) -> None:
        self.port = port
        self.eight_bit_mime = eight_bit_mime
        self.tls = tls
        self.cert = cert
        self.credentials = credentials
        self.auth_exclude = auth_exclude
        self.handler = RecordingHandler()
        self._counter = _SessionCounter()
        self._controller: _Controller | None = None

    @property
    def sessions(self) -> int:
        """Connections accepted since start (the controller's own probe not counted)."""
        return self._counter.opened

    @property
    def live_sessions(self) -> int:
        """Connections open right now."""
        with self._counter.lock:
            return len(self._counter.live)

    @property
    def received(self) -> list[ReceivedMail]:
        return self.handler.received

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        user, password = data.login.decode(), data.password.decode()
        if self.credentials.get(user) == password:
            self.handler.logins.append((mechanism, user))
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def start(self) -> SmtpTestServer:
        kwargs: dict[str, Any] = {
            "hostname": "127.0.0.1",
            "port": self.port,
            "server_hostname": "localhost",
            "ready_timeout": 10.0,
            "auth_require_tls": False,
            "decode_data": not self.eight_bit_mime,  # aiosmtpd: no 8BITMIME, 7-bit data only
        }
        if self.tls != "none":
            assert self.cert is not None, "a TLS server needs a certificate"
        if self.tls == "starttls":
            kwargs["tls_context"] = self.cert.server_context() if self.cert else None
        elif self.tls == "implicit":
            kwargs["ssl_context"] = self.cert.server_context() if self.cert else None
        if self.credentials is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_exclude_mechanism"] = list(self.auth_exclude)
        controller = _Controller(self.handler, self._counter, **kwargs)
        controller.start()
        self._controller = controller
        with self._counter.lock:
            self._counter.opened = 0
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def drop_connections(self, timeout: float = 5.0) -> None:
        """Close every open session from the server side, as an idle timeout would."""
        controller = self._controller
        assert controller is not None
        with self._counter.lock:
            sessions = list(self._counter.live)
        for smtp in sessions:
            transport = smtp.transport
            if transport is not None:
                controller.loop.call_soon_threadsafe(transport.close)
        deadline = time.monotonic() + timeout
        while self._counter.live and time.monotonic() < deadline:
            time.sleep(0.01)

    def smtp_config(self, **changes: Any) -> SmtpConfig:
        """An [smtp] table pointing at this server."""
        base = SmtpConfig(
            host="127.0.0.1",
            port=self.port,
            from_address="postbacks@example.com",
            from_name="Example Print Co.",
            tls=self.tls,
            timeout=5.0,
        )
        return replace(base, **changes)


class ConfigHolder:
    """The daemon's "current config" for a test: call it for the Config, `set_smtp` to reload."""

    def __init__(self, conf_dir: Path, smtp: SmtpConfig) -> None:
        self.config = Config(
            conf_dir=conf_dir,
            daemon=DaemonConfig(spool=conf_dir / "spool.db"),
            sources={},
            deliveries={},
            smtp=smtp,
            ui=UiConfig(),
            customers={},
            templates={},
            triggers={},
            lookups={},
        )

    def __call__(self) -> Config:
        return self.config

    def set_smtp(self, smtp: SmtpConfig) -> None:
        self.config = replace(self.config, smtp=smtp)

    def context(self) -> PluginContext:
        return PluginContext(config=self)


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> TlsCert:
    return make_tls_cert(tmp_path_factory.mktemp("smtp-tls"))


ServerFactory = Callable[..., SmtpTestServer]


@pytest.fixture
def smtp_server_factory() -> Iterator[ServerFactory]:
    """`factory(tls=..., cert=..., credentials={...}, port=..., start=True)` → a server."""
    servers: list[SmtpTestServer] = []

    def factory(*, port: int | None = None, start: bool = True, **kwargs: Any) -> SmtpTestServer:
        server = SmtpTestServer(port=port or free_port(), **kwargs)
        servers.append(server)
        return server.start() if start else server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: ServerFactory) -> SmtpTestServer:
    return smtp_server_factory()
