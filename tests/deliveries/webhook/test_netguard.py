"""The SSRF guard: address classes, the policy, and the resolver inside a real aiohttp client.

Names other than `localhost` cannot be resolved on a test machine without network, so
`FixedResolver` stands in for DNS (the one peer that cannot be had); everything else — the
connector, the sockets, the receiving server — is real. Every socket connect is recorded, and
one to a non-loopback address is refused before it could leave the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from postbackd.config.model import AllowedDestination, DaemonConfig
from postbackd.config.sections import parse_allowed_destination
from postbackd.deliveries.webhook.netguard import (
    AddressKind,
    AddressPolicy,
    DestinationRefused,
    GuardedResolver,
    GuardedSessions,
    classify,
)

ip = ipaddress.ip_address


def net(text: str) -> AllowedDestination:
    """A plain `allow_destinations` network entry: every port."""
    return AllowedDestination(ipaddress.ip_network(text))


class FixedResolver(AbstractResolver):
    """A DNS stand-in: each name answers with the addresses the test gives it."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        if host not in self.names:
            raise OSError(f"no such name {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.names[host]
        ]

    async def close(self) -> None:
        return None


@pytest.fixture
async def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Addresses the client connected to; a non-loopback connect is refused, never sent."""
    loop = asyncio.get_running_loop()
    real = loop.sock_connect
    seen: list[str] = []

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        seen.append(address[0])
        if not ip(address[0]).is_loopback:
            raise ConnectionRefusedError(f"test refused a connect to {address[0]}")
        await real(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    return seen


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[TestServer, list[str]]]:
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.host)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server, hits
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", AddressKind.LOOPBACK),
        ("127.8.9.10", AddressKind.LOOPBACK),
        ("::1", AddressKind.LOOPBACK),
        ("::ffff:127.0.0.1", AddressKind.LOOPBACK),
        ("0.0.0.0", AddressKind.UNSPECIFIED),
        ("::", AddressKind.UNSPECIFIED),
        ("10.0.0.1", AddressKind.PRIVATE),
        ("172.16.5.4", AddressKind.PRIVATE),
        ("192.168.1.1", AddressKind.PRIVATE),
        ("::ffff:10.1.2.3", AddressKind.PRIVATE),
        ("fc00::1", AddressKind.PRIVATE),
        ("169.254.169.254", AddressKind.LINK_LOCAL),
        ("fe80::1", AddressKind.LINK_LOCAL),
        ("224.0.0.1", AddressKind.MULTICAST),
        ("ff02::1", AddressKind.MULTICAST),
        ("240.0.0.1", AddressKind.PRIVATE),
        ("100.64.0.1", AddressKind.NON_PUBLIC),
        ("2002:7f00:1::1", AddressKind.LOOPBACK),
        ("64:ff9b::a9fe:a9fe", AddressKind.LINK_LOCAL),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
    ],
)
def test_classify(address: str, kind: AddressKind | None) -> None:
    assert classify(ip(address)) is kind


def test_policy_refuses_non_public_and_names_the_fix() -> None:
    with pytest.raises(DestinationRefused) as excinfo:
        AddressPolicy().check("hooks.example", [ip("93.184.216.34"), ip("127.0.0.1")])
    assert str(excinfo.value) == (
        "destination hooks.example resolves to 127.0.0.1, a loopback address; allow it with "
        '[daemon] allow_private_destinations = true or allow_destinations = ["127.0.0.1/32"]'
    )


def test_refusal_of_a_literal_and_of_a_mapped_address() -> None:
    with pytest.raises(
        DestinationRefused, match=r"^destination ::1 is a loopback address;.*::1/128"
    ):
        AddressPolicy().check("::1", [ip("::1")])
    with pytest.raises(DestinationRefused) as excinfo:
        AddressPolicy().check("::ffff:a9fe:a9fe", [ip("::ffff:169.254.169.254")])
    message = str(excinfo.value)
    assert "IPv4 169.254.169.254" in message and "a link-local address" in message
    assert '["169.254.169.254/32"]' in message


def test_policy_allows_listed_networks_and_everything_when_private_is_allowed() -> None:
    listed = AddressPolicy(allow=(net("10.1.2.0/24"), net("fd00::/8")))
    listed.check("a", [ip("10.1.2.3"), ip("fd12::1"), ip("8.8.8.8")])
    listed.check("mapped", [ip("::ffff:10.1.2.9")])
    with pytest.raises(DestinationRefused):
        listed.check("b", [ip("10.1.3.1")])
    AddressPolicy(allow_private=True).check("c", [ip("127.0.0.1"), ip("169.254.169.254")])


def test_policy_from_daemon_exempts_the_proxy(tmp_path: Path) -> None:
    daemon = DaemonConfig(
        spool=tmp_path / "s.db",
        allow_destinations=(net("192.168.0.0/16"),),
        proxy="http://Proxy.local:3128",
    )
    policy = AddressPolicy.from_daemon(daemon)
    assert policy.allow == (net("192.168.0.0/16"),) and not policy.allow_private
    assert policy.is_exempt("proxy.local", 3128)
    assert not policy.is_exempt("proxy.local", 80)


async def test_connector_never_connects_to_a_refused_name(
    connects: list[str], receiver: tuple[TestServer, list[str]]
) -> None:
    server, hits = receiver
    dns = FixedResolver({"intranet.test": ["10.0.0.1"], "mixed.test": ["127.0.0.1", "10.0.0.7"]})
    policy = AddressPolicy(allow=(net("127.0.0.0/8"),))
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(lambda: policy, dns))
    async with aiohttp.ClientSession(connector=connector) as session:
        for name, shown in (("intranet.test", "10.0.0.1"), ("mixed.test", "10.0.0.7")):
            with pytest.raises(aiohttp.ClientConnectorDNSError) as excinfo:
                await session.get(f"http://{name}:{server.port}/")
            refused = excinfo.value.os_error
            assert isinstance(refused, DestinationRefused)
            assert refused.host == name and str(refused.address) == shown
    assert connects == [] and hits == []
    assert dns.lookups == ["intranet.test", "mixed.test"]


async def test_connector_connects_to_an_allowed_name(
    connects: list[str], receiver: tuple[TestServer, list[str]]
) -> None:
    server, hits = receiver
    dns = FixedResolver({"receiver.test": ["127.0.0.1"]})
    policy = AddressPolicy(allow=(net("127.0.0.1/32"),))
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(lambda: policy, dns))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"http://receiver.test:{server.port}/x") as answer,
    ):
        assert answer.status == 200
    assert connects == ["127.0.0.1"]
    assert hits == [f"receiver.test:{server.port}"]


async def test_sessions_apply_a_changed_policy_to_the_next_connection(
    connects: list[str], receiver: tuple[TestServer, list[str]]
) -> None:
    server, hits = receiver
    dns = FixedResolver({"receiver.test": ["127.0.0.1"]})
    current = [AddressPolicy(allow_private=True)]
    sessions = GuardedSessions(lambda: current[0], inner_resolver=lambda: dns)
    url = f"http://receiver.test:{server.port}/"
    try:
        async with sessions.session() as first, first.get(url) as answer:
            assert answer.status == 200
        current[0] = AddressPolicy()
        async with sessions.session() as second:
            assert second is not first and first.closed
            with pytest.raises(aiohttp.ClientConnectorDNSError) as excinfo:
                await second.get(url)
        assert isinstance(excinfo.value.os_error, DestinationRefused)
    finally:
        await sessions.close()
    assert len(hits) == 1 and connects == ["127.0.0.1"]


async def test_old_session_stays_open_until_its_last_attempt_ends() -> None:
    current = [AddressPolicy()]
    sessions = GuardedSessions(lambda: current[0], inner_resolver=lambda: FixedResolver({}))
    try:
        async with sessions.session() as old:
            current[0] = AddressPolicy(allow_private=True)
            async with sessions.session() as new:
                assert new is not old and not old.closed
            assert not new.closed
        assert old.closed
    finally:
        await sessions.close()
    assert new.closed


@pytest.mark.parametrize(
    ("host", "names", "refused"),
    [
        ("10.0.0.1", {}, "10.0.0.1"),
        ("[::1]", {}, "::1"),
        ("169.254.169.254", {}, "169.254.169.254"),
        ("metadata.test", {"metadata.test": ["169.254.169.254"]}, "169.254.169.254"),
    ],
)
async def test_vet_checks_literals_and_names_without_connecting(
    connects: list[str], host: str, names: dict[str, list[str]], refused: str
) -> None:
    dns = FixedResolver(names)
    sessions = GuardedSessions(AddressPolicy, inner_resolver=lambda: dns)
    try:
        with pytest.raises(DestinationRefused) as excinfo:
            await sessions.vet(host, 80)
    finally:
        await sessions.close()
    assert str(excinfo.value.address) == refused
    assert connects == []
    assert dns.lookups == ([host] if names else [])


async def test_vet_passes_a_public_destination_and_an_exempt_proxy_still_connects(
    connects: list[str], receiver: tuple[TestServer, list[str]]
) -> None:
    server, hits = receiver
    port = server.port
    assert port is not None
    dns = FixedResolver({"proxy.test": ["127.0.0.1"], "public.test": ["93.184.216.34"]})
    policy: Callable[[], AddressPolicy] = lambda: AddressPolicy(  # noqa: E731
        exempt=frozenset({("proxy.test", port)})
    )
    sessions = GuardedSessions(policy, inner_resolver=lambda: dns)
    try:
        await sessions.vet("public.test", 443)
        async with sessions.session() as session:
            async with session.get(f"http://proxy.test:{port}/") as answer:
                assert answer.status == 200
            with pytest.raises(aiohttp.ClientConnectorDNSError):
                await session.get(f"http://proxy.test:{port + 1}/")
    finally:
        await sessions.close()
    assert connects == ["127.0.0.1"] and len(hits) == 1


async def test_concurrent_attempts_after_a_change_share_one_new_session() -> None:
    current = [AddressPolicy()]
    sessions = GuardedSessions(lambda: current[0], inner_resolver=lambda: FixedResolver({}))
    seen: list[aiohttp.ClientSession] = []

    async def attempt() -> None:
        async with sessions.session() as session:
            seen.append(session)
            await asyncio.sleep(0.01)

    try:
        await attempt()
        current[0] = AddressPolicy(allow_private=True)
        await asyncio.gather(*(attempt() for _ in range(5)))
    finally:
        await sessions.close()
    first, *after = seen
    assert first.closed and len(set(map(id, after))) == 1 and after[0] is not first
    assert after[0].closed


# ------------------------------------------------------------------ entries with a port


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("10.1.2.0/24", "10.1.2.0/24"),
        ("10.1.2.3", "10.1.2.3/32"),
        ("10.1.2.3:8443", "10.1.2.3:8443"),
        ("10.1.2.0/24:443", "10.1.2.0/24:443"),
        ("[fd00::7]:8443", "[fd00::7]:8443"),
        ("[fd00::/8]:443", "[fd00::/8]:443"),
        ("fd00::/8:443", "[fd00::/8]:443"),
        ("::1", "::1/128"),
        (" Receiver.Internal.:8443 ", "receiver.internal:8443"),
    ],
)
def test_allow_destinations_entries_parse(text: str, shown: str) -> None:
    assert str(parse_allowed_destination(text)) == shown


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("intranet", "a host name needs a port ('intranet' would trust every port"),
        ("intranet:0", "not a port number (1-65535): '0'"),
        ("intranet:99999", "not a port number (1-65535): '99999'"),
        ("10.1.2.3/24:80", 'has host bits set (did you mean "10.1.2.0/24"?)'),
        ("[10.0.0.1]:80", "brackets are for IPv6 addresses only"),
        ("[fd00::7:80", 'expected "[IPv6 address]:port"'),
        ("fd00::7:80x", "not a port number"),
        ("no space:80", "not a network, an address or host:port like"),
        ("", "not a network, an address or host:port like"),
    ],
)
def test_bad_allow_destinations_entries_say_what_to_write(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_allowed_destination(text)


def test_an_entry_with_a_port_allows_that_port_only() -> None:
    policy = AddressPolicy(
        allow=tuple(
            parse_allowed_destination(text)
            for text in ("10.1.2.3:8443", "[fd00::7]:443", "10.9.0.0/16:80", "fc00::/8")
        )
    )
    policy.check("10.1.2.3", [ip("10.1.2.3")], 8443)
    policy.check("mapped", [ip("::ffff:10.1.2.3")], 8443)
    policy.check("fd00::7", [ip("fd00::7")], 443)
    policy.check("net", [ip("10.9.4.5")], 80)
    policy.check("every-port", [ip("fc00::9")], 22)
    for host, address, port in (
        ("10.1.2.3", "10.1.2.3", 22),
        ("10.1.2.3", "10.1.2.3", None),  # an unknown port is never a listed one
        ("fd00::7", "fd00::7", 8443),
        ("net", "10.9.4.5", 8080),
        ("10.1.2.4", "10.1.2.4", 8443),
    ):
        with pytest.raises(DestinationRefused):
            policy.check(host, [ip(address)], port)


def test_a_host_entry_allows_that_name_on_that_port_whatever_it_resolves_to() -> None:
    policy = AddressPolicy(allow=(parse_allowed_destination("Receiver.Internal:8443"),))
    policy.check("receiver.internal", [ip("10.0.0.5"), ip("127.0.0.1")], 8443)
    policy.check("RECEIVER.internal.", [ip("10.0.0.5")], 8443)
    with pytest.raises(DestinationRefused):
        policy.check("receiver.internal", [ip("10.0.0.5")], 8444)
    with pytest.raises(DestinationRefused):
        policy.check("other.internal", [ip("10.0.0.5")], 8443)  # same address, other name


def test_a_refusal_with_a_port_suggests_that_port_only() -> None:
    for host, address, port, entry in (
        ("hooks.example", "10.0.0.5", 8443, "10.0.0.5:8443"),
        ("::1", "::1", 80, "[::1]:80"),
        ("mapped", "::ffff:169.254.169.254", 80, "169.254.169.254:80"),
    ):
        with pytest.raises(DestinationRefused) as excinfo:
            AddressPolicy().check(host, [ip(address)], port)
        assert str(excinfo.value).endswith(f'allow_destinations = ["{entry}"]')
        # and the suggested entry does let it through
        AddressPolicy(allow=(parse_allowed_destination(entry),)).check(host, [ip(address)], port)


async def test_connector_allows_a_name_on_its_listed_port_only(
    connects: list[str], receiver: tuple[TestServer, list[str]]
) -> None:
    server, hits = receiver
    dns = FixedResolver({"receiver.test": ["127.0.0.1"]})
    policy = AddressPolicy(allow=(parse_allowed_destination(f"127.0.0.1:{server.port}"),))
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(lambda: policy, dns))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"http://receiver.test:{server.port}/x") as answer:
            assert answer.status == 200
        with pytest.raises(aiohttp.ClientConnectorDNSError) as excinfo:
            await session.get(f"http://receiver.test:{server.port + 1}/x")
        assert isinstance(excinfo.value.os_error, DestinationRefused)
    assert connects == ["127.0.0.1"] and len(hits) == 1
