"""The SSRF guard: which addresses a postback may be sent to, enforced where the socket connects.

A webhook URL is written by whoever edits a trigger, and the daemon often runs next to things
that must not be reachable from it (a cloud metadata service at 169.254.169.254, an admin port
on localhost, the office network). So every address a destination resolves to is checked, and
one non-public address refuses the whole destination — unless `[daemon]
allow_private_destinations = true`, or an `allow_destinations` entry allows it: a network (every
port), a network or address with a port (``"10.1.2.3:8443"``: that receiver, not the machine's
other ports), or ``host:port`` (that name on that port, whatever it resolves to). So the port a
destination is reached on is part of every check.

The check sits in the aiohttp connector's resolver (`GuardedResolver`): the addresses checked
are the very addresses the connector then connects to, so a name that answers with a public
address to a first lookup and a private one to the next (DNS rebinding) gains nothing. aiohttp
does not call a resolver for IP-literal URLs, and with a proxy it resolves only the proxy, so
`GuardedSessions.vet` checks those destinations before the request. Behind a proxy the proxy
makes its own lookup; a filtering proxy (one that refuses private addresses itself) is then
the stronger guard, and `[daemon] proxy` is the place for one.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

if TYPE_CHECKING:
    from postbackd.config import AllowedDestination, DaemonConfig

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class AddressKind(StrEnum):
    """Why an address is not public, as the refusal message words it."""

    UNSPECIFIED = "an unspecified address"
    LOOPBACK = "a loopback address"
    LINK_LOCAL = "a link-local address"
    MULTICAST = "a multicast address"
    PRIVATE = "a private address"
    RESERVED = "a reserved address"
    NON_PUBLIC = "a special-purpose, non-public address"


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (IPv4-mapped, 6to4, NAT64), which is where it goes."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def classify(address: Address) -> AddressKind | None:
    """What kind of non-public address this is, or None for a public (global unicast) one."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return classify(inner)
    if address.is_unspecified:
        return AddressKind.UNSPECIFIED
    if address.is_loopback:
        return AddressKind.LOOPBACK
    if address.is_link_local:
        return AddressKind.LINK_LOCAL
    if address.is_multicast:
        return AddressKind.MULTICAST
    if address.is_private:
        return AddressKind.PRIVATE
    if address.is_reserved:
        return AddressKind.RESERVED
    if not address.is_global:
        return AddressKind.NON_PUBLIC
    return None


@functools.lru_cache(maxsize=4096)
def parse_ip(host: str) -> Address | None:
    """The address an IP-literal host names (``[::1]`` brackets allowed), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class DestinationRefused(OSError):
    """A destination resolves to an address the policy refuses; nothing was sent to it.

    An OSError so that aiohttp passes it on from the resolver like any failed lookup (wrapped
    in `aiohttp.ClientConnectorDNSError`, whose ``os_error`` is this exception).
    """

    def __init__(
        self, host: str, address: Address, kind: AddressKind, port: int | None = None
    ) -> None:
        self.host = host
        self.address = address
        self.kind = kind
        self.port = port
        super().__init__(self.message)

    @property
    def message(self) -> str:
        target = _plain(self.address)
        if parse_ip(self.host) is not None:
            head = f"destination {self.host} is {self.kind.value}"
        else:
            head = f"destination {self.host} resolves to {target}, {self.kind.value}"
        inner = embedded_ipv4(self.address)
        if inner is not None:
            head += f" (IPv4 {inner} inside an IPv6 address)"
        return (
            f"{head}; allow it with [daemon] allow_private_destinations = true "
            f'or allow_destinations = ["{self.suggestion}"]'
        )

    @property
    def suggestion(self) -> str:
        """The narrowest `allow_destinations` entry that lets this destination through: the
        address on its port when the port is known (not every port of that machine)."""
        inner = embedded_ipv4(self.address)
        if self.port is None:
            if inner is not None:
                return f"{inner}/32"
            return f"{_plain(self.address)}/{self.address.max_prefixlen}"
        if inner is not None:
            return f"{inner}:{self.port}"
        if self.address.version == 6:
            return f"[{_plain(self.address)}]:{self.port}"
        return f"{self.address}:{self.port}"

    def __str__(self) -> str:
        return self.message


def _plain(address: Address) -> str:
    """The address without an IPv6 zone (``fe80::1%eth0`` → ``fe80::1``), as a network takes it."""
    return str(address).split("%", 1)[0]


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses may be connected to: public ones, plus what `[daemon]` allows.

    ``allow`` holds the `allow_destinations` entries; ``exempt`` holds (host, port) pairs that
    are never checked: the configured proxy, which the operator chose and which is usually on
    loopback.
    """

    allow_private: bool = False
    allow: tuple[AllowedDestination, ...] = ()
    exempt: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    @classmethod
    def from_daemon(cls, daemon: DaemonConfig) -> AddressPolicy:
        exempt: frozenset[tuple[str, int]] = frozenset()
        if daemon.proxy:
            proxy = URL(daemon.proxy)
            if proxy.host is not None and proxy.port is not None:
                exempt = frozenset({(proxy.host.lower().rstrip("."), proxy.port)})
        return cls(daemon.allow_private_destinations, daemon.allow_destinations, exempt)

    def allows(self, address: Address, host: str = "", port: int | None = None) -> bool:
        """Whether `address`, which `host` resolved to, may be connected to on `port`.

        With no port (None), only entries without one can allow a non-public address.
        """
        if self.allow_private or classify(address) is None:
            return True
        inner = embedded_ipv4(address)
        candidates = (address,) if inner is None else (address, inner)
        return any(
            entry.matches(host, candidate, port) for entry in self.allow for candidate in candidates
        )

    def check(self, host: str, addresses: Sequence[Address], port: int | None = None) -> None:
        """Raise `DestinationRefused` naming the first refused address, if any is refused."""
        for address in addresses:
            if not self.allows(address, host, port):
                kind = classify(address)
                assert kind is not None
                raise DestinationRefused(host, address, kind, port)

    def is_exempt(self, host: str, port: int) -> bool:
        return (host.lower().rstrip("."), port) in self.exempt


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses a name if any address it resolves to is refused.

    The policy is read at each lookup, so a reloaded `[daemon]` applies to the next connection.
    """

    def __init__(
        self, policy: Callable[[], AddressPolicy], inner: AbstractResolver | None = None
    ) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        policy = self._policy()
        if not policy.is_exempt(host, port):
            policy.check(host, [ipaddress.ip_address(r["host"]) for r in results], port or None)
        return results

    async def vet(self, host: str, port: int) -> None:
        """Check a destination the connector will not resolve (an IP literal, or behind a proxy)."""
        policy = self._policy()
        literal = parse_ip(host)
        if literal is not None:
            policy.check(host, [literal], port or None)
            return
        results = await self._inner.resolve(host, port, socket.AF_UNSPEC)
        policy.check(host, [ipaddress.ip_address(r["host"]) for r in results], port or None)

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class _Pool:
    policy: AddressPolicy
    session: aiohttp.ClientSession
    users: int = 0
    retired: bool = False


class GuardedSessions:
    """Shared aiohttp sessions whose connections only reach addresses the policy allows.

    One session serves every attempt while the policy stays the same. When it changes (a
    reload), new attempts get a new session and the old one is closed once its last attempt
    ends, so a kept-alive connection to a now-refused address is not reused.

    The connector sets no pool limits of its own: the dispatcher's `concurrency` and
    `per_destination` bound the attempts in flight, and a smaller limit here would make an
    attempt wait for a pooled connection inside its own timeout. Create and use it inside the
    running event loop.
    """

    def __init__(
        self,
        policy: Callable[[], AddressPolicy],
        *,
        inner_resolver: Callable[[], AbstractResolver] = ThreadedResolver,
    ) -> None:
        self._policy = policy
        self._inner_resolver = inner_resolver
        self._resolver: GuardedResolver | None = None
        self._pool: _Pool | None = None

    def session(self) -> _SessionUse:
        """``async with sessions.session() as session``: the session for one attempt under the
        current policy (a class, not a generator context manager: this runs per attempt)."""
        return _SessionUse(self)

    async def vet(self, host: str, port: int) -> None:
        """Raise `DestinationRefused` if a destination the connector will not check is refused."""
        await self._guard().vet(host, port)

    def _guard(self) -> GuardedResolver:
        if self._resolver is None:
            self._resolver = GuardedResolver(self._policy, self._inner_resolver())
        return self._resolver

    def _acquire(self) -> tuple[_Pool, _Pool | None]:
        """The current pool, already counting this user, and the pool it replaced, if any.

        Nothing here awaits, so concurrent attempts never build two sessions for one policy.
        """
        policy = self._policy()
        replaced = None
        if self._pool is None or (self._pool.policy is not policy and self._pool.policy != policy):
            replaced = self._pool
            if replaced is not None:
                replaced.retired = True
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=0, resolver=self._guard(), use_dns_cache=False
            )
            # No cookie jar: one receiver's Set-Cookie must not ride along on later postbacks.
            session = aiohttp.ClientSession(
                connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
            )
            self._pool = _Pool(policy, session)
        pool = self._pool
        pool.users += 1
        return pool, replaced

    @staticmethod
    async def release(pool: _Pool) -> None:
        """Close a retired pool's session once its last attempt has ended."""
        if pool.retired and pool.users == 0 and not pool.session.closed:
            await pool.session.close()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.retired = True
            await self.release(pool)
        resolver, self._resolver = self._resolver, None
        if resolver is not None:
            await resolver.close()


class _SessionUse:
    """One attempt's use of the current pool: counted while it lasts, released after."""

    __slots__ = ("_owner", "_pool")

    def __init__(self, owner: GuardedSessions) -> None:
        self._owner = owner
        self._pool: _Pool | None = None

    async def __aenter__(self) -> aiohttp.ClientSession:
        pool, retired = self._owner._acquire()
        self._pool = pool
        if retired is not None:
            try:
                await GuardedSessions.release(retired)
            except BaseException:
                pool.users -= 1
                raise
        return pool.session

    async def __aexit__(self, *exc_info: object) -> None:
        pool = self._pool
        assert pool is not None
        pool.users -= 1
        if pool.retired:
            await GuardedSessions.release(pool)
