"""Reused SMTP connections: a small pool per server, one TLS context shared by all of them.

Opening an SMTP session costs a TCP handshake, a TLS handshake, EHLO twice and AUTH; a burst
of postbacks must not pay that per message. A pool per (host, port, tls, username) keeps up
to `size` sessions; callers wait for a free one. A session is not reused when it has been idle
too long (servers drop idle clients after a few minutes), when the server has closed it, or
when the password or timeout changed since it was opened.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosmtplib

from postbackd.config import SmtpConfig, TlsMode
from postbackd.deliveries.email.session import Phase, SmtpFailure, server_name

DEFAULT_POOL_SIZE = 4
MAX_IDLE = 60.0

Opener = Callable[[SmtpConfig], Awaitable[aiosmtplib.SMTP]]


@dataclass(frozen=True)
class ServerKey:
    """What identifies one pool: a server and the account logged in to it."""

    host: str
    port: int
    tls: TlsMode
    username: str | None

    @classmethod
    def of(cls, smtp: SmtpConfig) -> ServerKey:
        return cls(smtp.host, smtp.port, smtp.tls, smtp.username)


def settings_fingerprint(smtp: SmtpConfig) -> str:
    """A digest of every setting a session depends on (the password is not kept as such)."""
    text = "\0".join(
        str(part)
        for part in (smtp.host, smtp.port, smtp.tls, smtp.username, smtp.password, smtp.timeout)
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class PooledSession:
    """A session lent out by the pool. `reused` is True when it carried mail before."""

    client: aiosmtplib.SMTP
    fingerprint: str
    reused: bool = False
    idle_since: float = 0.0


class SmtpPool:
    """Up to `size` sessions to one server; `acquire` waits (up to the timeout) for a slot."""

    def __init__(self, key: ServerKey, size: int, opener: Opener) -> None:
        self.key = key
        self._slots = asyncio.Semaphore(size)
        self._idle: list[PooledSession] = []
        self._opener = opener
        self._fingerprinted: tuple[SmtpConfig, str] | None = None
        self.opened = 0  # sessions opened over the pool's life, for tests and metrics

    def _fingerprint(self, smtp: SmtpConfig) -> str:
        """`settings_fingerprint`, hashed again only when the [smtp] settings object changes
        (at a reload), not at every acquire."""
        if self._fingerprinted is None or self._fingerprinted[0] is not smtp:
            self._fingerprinted = (smtp, settings_fingerprint(smtp))
        return self._fingerprinted[1]

    async def acquire(self, smtp: SmtpConfig, *, fresh: bool = False) -> PooledSession:
        """A session for `smtp`: an idle one still good, or a new one. Raises `SmtpFailure`."""
        try:
            async with asyncio.timeout(smtp.timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise SmtpFailure(
                Phase.CONNECT,
                f"all connections to smtp://{server_name(smtp)} stayed busy for {smtp.timeout:g}s",
            ) from None
        try:
            self.prune()
            fingerprint = self._fingerprint(smtp)
            if not fresh:
                session = self._take_idle(fingerprint)
                if session is not None:
                    return session
            client = await self._opener(smtp)
            self.opened += 1
            return PooledSession(client=client, fingerprint=fingerprint)
        except BaseException:
            self._slots.release()
            raise

    def _take_idle(self, fingerprint: str) -> PooledSession | None:
        while self._idle:
            session = self._idle.pop()
            if session.fingerprint == fingerprint:
                session.reused = True
                return session
            session.client.close()
        return None

    def release(self, session: PooledSession, *, reusable: bool) -> None:
        """Give a session back: kept for the next caller when `reusable`, else closed."""
        if reusable and session.client.is_connected:
            session.idle_since = time.monotonic()
            self._idle.append(session)
        else:
            session.client.close()
        self._slots.release()

    def prune(self) -> None:
        """Close idle sessions that are too old or were closed by the server."""
        now = time.monotonic()
        keep = []
        for session in self._idle:
            if session.client.is_connected and now - session.idle_since < MAX_IDLE:
                keep.append(session)
            else:
                session.client.close()
        self._idle = keep

    async def close(self) -> None:
        """QUIT and close every idle session (sessions in use are closed on release)."""
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(session.client) for session in idle))


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await asyncio.wait_for(client.quit(), 2.0)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        client.close()


class SmtpPools:
    """The pools of one delivery plugin, created on first use per `ServerKey`."""

    def __init__(self, size: int, opener: Opener) -> None:
        self._size = size
        self._opener = opener
        self._pools: dict[ServerKey, SmtpPool] = {}

    def pool_for(self, smtp: SmtpConfig) -> SmtpPool:
        key = ServerKey.of(smtp)
        pool = self._pools.get(key)
        if pool is None:
            for other in self._pools.values():
                other.prune()
            pool = self._pools[key] = SmtpPool(key, self._size, self._opener)
        return pool

    @property
    def opened(self) -> int:
        return sum(pool.opened for pool in self._pools.values())

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(pool.close() for pool in pools))
