"""The built-in webhook delivery: one HTTP request per attempt, signed the Standard Webhooks way.

Each attempt reads `[daemon]` (address policy, proxy) from the current configuration and
stamps a fresh `webhook-timestamp` and `webhook-signature`, since receivers reject old ones.
Redirects are never followed: a receiver that moved says so in the request log, and a
redirect cannot lead a postback past the SSRF guard (`postbackd.deliveries.webhook.netguard`).

A receiver may also ask for a client certificate (`tls`: one SSLContext per option set, built
off the event loop) and for an OAuth2 bearer token (`oauth2`: fetched through the same guard
and proxy, cached, fetched again once when the receiver answers 401).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from postbackd.config import Trigger
from postbackd.deliveries.webhook.netguard import (
    AddressPolicy,
    DestinationRefused,
    GuardedResolver,
    GuardedSessions,
    parse_ip,
)
from postbackd.deliveries.webhook.oauth2 import (
    AccessToken,
    OAuth2Options,
    TokenCache,
    TokenError,
    request_token,
)
from postbackd.deliveries.webhook.options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    MASK,
    WebhookOptions,
    is_sensitive,
    mask_headers,
    mask_url,
)
from postbackd.deliveries.webhook.signing import signature_header
from postbackd.deliveries.webhook.tls import (
    TlsContexts,
    TlsFileError,
    TlsOptions,
    check_files,
    parse_tls,
)
from postbackd.plugin import ConnectionCheck, Delivery, Outcome, PluginContext
from postbackd.redaction import Redactor, masked_outcome
from postbackd.units import format_duration

EXCERPT_BYTES = 1024
CONNECT_CHECK = 5.0  # seconds `check --connect` waits for a receiver's TCP handshake
PREPARED_LIMIT = 16384  # trigger options worked out and kept; more (many reloads) starts afresh
TOKEN_TIMEOUT = aiohttp.ClientTimeout(total=DEFAULT_TIMEOUT, sock_connect=DEFAULT_CONNECT_TIMEOUT)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What one trigger's options mean, worked out at its first attempt in a generation.

    A configuration never changes in place (a reload builds new option mappings), so the
    mapping itself is the key; it is kept here, so its id cannot be reused meanwhile.
    """

    options: Mapping[str, Any]
    parsed: WebhookOptions | None
    errors: tuple[str, ...]
    shown_url: str
    timeout: aiohttp.ClientTimeout | None


class WebhookDelivery:
    """Sends a rendered postback to `options.url`; see `WebhookOptions` for the options.

    The webhook delivery takes no `[deliveries.webhook]` settings: everything a request needs
    is per trigger, and `[daemon]` holds the address policy and the proxy.
    """

    def __init__(self, settings: Mapping[str, Any], context: PluginContext) -> None:
        if settings:
            names = ", ".join(sorted(settings))
            raise ValueError(
                f"[deliveries.webhook]: unknown setting(s) {names}: the webhook delivery has "
                "no settings; set url, secret, headers and timeouts in each [trigger.options]"
            )
        self._context = context
        self._sessions: GuardedSessions | None = None
        self._prepared: dict[int, _Prepared] = {}
        self._destinations: dict[int, tuple[Mapping[str, Any], str]] = {}
        self._policy_of: tuple[object, AddressPolicy] | None = None
        self._vetted: set[tuple[str, int, AddressPolicy]] = set()
        self._tls = TlsContexts()
        self._ssl_of: dict[int, tuple[Mapping[str, Any], ssl.SSLContext]] = {}
        self._tokens = TokenCache(self._fetch_token)

    def validate_options(self, options: Mapping[str, Any]) -> list[str]:
        """The options' problems, and (for `check` and each reload, which run off the event
        loop) whether the TLS files load: a missing or mismatched file is found before an
        attempt needs it."""
        errors = WebhookOptions.parse(options)[1]
        tls = parse_tls(options.get("tls"), [])  # its files are checked whatever else is wrong
        if tls is not None:
            errors.extend(check_files(tls))
        return errors

    def destination(self, options: Mapping[str, Any]) -> str:
        """``scheme://host:port`` of the receiver: the unit of concurrency and circuit breaking."""
        known = self._destinations.get(id(options))
        if known is not None and known[0] is options:
            return known[1]
        destination = _destination(options)
        if len(self._destinations) >= PREPARED_LIMIT:
            self._destinations.clear()
        self._destinations[id(options)] = (options, destination)
        return destination

    async def deliver(self, delivery: Delivery, options: Mapping[str, Any]) -> Outcome:
        prepared = self._prepare(options)
        parsed = prepared.parsed
        if parsed is None:
            problems = "; ".join(prepared.errors)
            return Outcome.fail(
                f"trigger {delivery.trigger}: invalid webhook options: {problems}", breaker=False
            )
        proxy = self._context.config().daemon.proxy
        if parsed.tls is None and parsed.oauth2 is None:
            return await self._exchange(delivery, prepared, proxy, True, None)
        try:
            # the token, the request and its second try after a 401 share the attempt's
            # `timeout`, so the attempt ends with a reason before the core cuts it short
            async with asyncio.timeout(parsed.timeout):
                context = True if parsed.tls is None else await self._ssl(options, parsed.tls)
                token = None if parsed.oauth2 is None else await self._tokens.token(parsed.oauth2)
                outcome = await self._exchange(delivery, prepared, proxy, context, token)
                if parsed.oauth2 is not None and token is not None and outcome.status == 401:
                    # the token was revoked or the receiver's keys rotated: a fresh one, once
                    self._tokens.invalidate(parsed.oauth2, token)
                    token = await self._tokens.token(parsed.oauth2)
                    outcome = await self._exchange(delivery, prepared, proxy, context, token)
                return outcome
        except TimeoutError:
            waited = format_duration(parsed.timeout)
            step = "an OAuth2 token and " if parsed.oauth2 is not None else ""
            error = f"timed out after {waited} waiting for {step}{prepared.shown_url}"
            request = self._request_log(delivery, prepared, proxy)
            request["headers"] = mask_headers(self._headers(delivery, parsed, int(time.time())))
            return Outcome.retry(error, request=request, response={"error": error})
        except TlsFileError as exc:
            # the files changed since `check`: the configuration's fault, not the receiver's
            return Outcome.retry(f"trigger {delivery.trigger}: {exc}", breaker=False)
        except TokenError as exc:
            request = self._request_log(delivery, prepared, proxy)
            request["headers"] = mask_headers(self._headers(delivery, parsed, int(time.time())))
            extra: dict[str, Any] = {
                "request": request,
                "response": {"error": exc.reason},
                "breaker": not exc.permanent,
            }
            if exc.permanent:
                return Outcome.fail(exc.reason, **extra)
            return Outcome.retry(exc.reason, **extra)

    async def _exchange(
        self,
        delivery: Delivery,
        prepared: _Prepared,
        proxy: str | None,
        context: ssl.SSLContext | bool,
        token: AccessToken | None,
    ) -> Outcome:
        """One request, with its own timestamp and signature; network trouble explained."""
        parsed = prepared.parsed
        assert parsed is not None
        headers = self._headers(delivery, parsed, int(time.time()))
        if token is not None:
            headers["Authorization"] = f"Bearer {token.value}"
        request = self._request_log(delivery, prepared, proxy)
        started = time.monotonic()
        try:
            outcome = await self._send(
                delivery, prepared, headers, proxy, request, started, context
            )
            if token is not None:  # a receiver may echo the token back in its answer
                outcome = masked_outcome(outcome, Redactor.of([token.value]))
            return outcome
        except (aiohttp.ClientError, OSError) as exc:
            if request["headers"] is None:
                request["headers"] = mask_headers(headers)
            error, permanent = _explain(exc, parsed)
            response = {"error": error, "latency_ms": _elapsed_ms(started)}
            # a permanent failure here is the configuration's, not a sign the receiver is down
            extra: dict[str, Any] = {
                "request": request,
                "response": response,
                "breaker": not permanent,
            }
            return Outcome.fail(error, **extra) if permanent else Outcome.retry(error, **extra)

    @staticmethod
    def _request_log(delivery: Delivery, prepared: _Prepared, proxy: str | None) -> dict[str, Any]:
        assert prepared.parsed is not None
        request: dict[str, Any] = {
            "method": prepared.parsed.method,
            "url": prepared.shown_url,
            "headers": None,  # the headers sent, once known; ours if the exchange failed
            "body_bytes": len(delivery.body),
        }
        if proxy:
            request["proxy"] = mask_url(URL(proxy))
        return request

    async def _ssl(self, options: Mapping[str, Any], tls: TlsOptions) -> ssl.SSLContext:
        """The trigger's SSLContext, looked up once per configuration generation (the files'
        state is read then, so a reload picks up a certificate renewed in place)."""
        known = self._ssl_of.get(id(options))
        if known is not None and known[0] is options:
            return known[1]
        context = await self._tls.context(tls)
        if len(self._ssl_of) >= PREPARED_LIMIT:
            self._ssl_of.clear()
        self._ssl_of[id(options)] = (options, context)
        return context

    async def _fetch_token(self, oauth: OAuth2Options) -> AccessToken:
        """One token request through the SSRF guard and the `[daemon]` proxy, as a postback
        goes; network trouble becomes a TokenError naming the token endpoint."""
        proxy = self._context.config().daemon.proxy
        sessions = self._guarded_sessions()
        url = oauth.token_url
        try:
            await self._vet(sessions, url, proxy, DEFAULT_TIMEOUT)
            async with sessions.session() as session:
                return await request_token(
                    session,
                    oauth,
                    timeout=TOKEN_TIMEOUT,
                    proxy=proxy,
                    user_agent=f"postbackd/{self._context.version}",
                )
        except (aiohttp.ClientError, OSError) as exc:
            error, permanent = _explain(exc, WebhookOptions(url))
            raise TokenError(
                f"OAuth2 token endpoint {mask_url(url)}: {error}", permanent=permanent
            ) from None

    def _prepare(self, options: Mapping[str, Any]) -> _Prepared:
        prepared = self._prepared.get(id(options))
        if prepared is not None and prepared.options is options:
            return prepared
        parsed, errors = WebhookOptions.parse(options)
        prepared = _Prepared(
            options,
            parsed,
            tuple(errors),
            mask_url(parsed.url) if parsed is not None else "",
            None
            if parsed is None
            else aiohttp.ClientTimeout(total=parsed.timeout, sock_connect=parsed.connect_timeout),
        )
        if len(self._prepared) >= PREPARED_LIMIT:
            self._prepared.clear()
        self._prepared[id(options)] = prepared
        return prepared

    async def _send(
        self,
        delivery: Delivery,
        prepared: _Prepared,
        headers: CIMultiDict[str],
        proxy: str | None,
        request: dict[str, Any],
        started: float,
        context: ssl.SSLContext | bool,
    ) -> Outcome:
        """One HTTP exchange; network trouble is raised for `_exchange` to explain."""
        options = prepared.parsed
        assert options is not None
        sessions = self._guarded_sessions()
        await self._vet(sessions, options.url, proxy, options.timeout)
        async with (
            sessions.session() as session,
            session.request(
                options.method,
                options.url,
                data=delivery.body,
                headers=headers,
                allow_redirects=False,
                timeout=prepared.timeout,
                proxy=proxy,
                ssl=context,
            ) as answer,
        ):
            latency_ms = _elapsed_ms(started)
            request["headers"] = _mask_sent(answer.request_info.headers)
            body, truncated = await _excerpt(answer)
            response = {
                "status": answer.status,
                "reason": answer.reason,
                "headers": _flat(answer.headers),
                "body": _decode(body, answer.charset),
                "truncated": truncated,
                "latency_ms": latency_ms,
            }
            return _judge(answer, options.url, request, response)

    async def _vet(
        self, sessions: GuardedSessions, url: URL, proxy: str | None, timeout: float
    ) -> None:
        """Check a destination the connector's resolver will not: any behind a proxy, and an
        IP literal (whose verdict depends on the policy alone: checked once per policy)."""
        host, port = url.host or "", url.port or 0
        if proxy:
            async with asyncio.timeout(timeout):
                await sessions.vet(host, port)
        elif parse_ip(host) is not None:
            vetted = (host, port, self._policy())
            if vetted not in self._vetted:
                await sessions.vet(host, port)
                if len(self._vetted) >= PREPARED_LIMIT:
                    self._vetted.clear()
                self._vetted.add(vetted)

    async def check_connections(self, triggers: Sequence[Trigger]) -> list[ConnectionCheck]:
        """`check --connect`: each trigger's receiver resolved, vetted by the address policy
        (SSRF guard) and connected to over TCP; with `tls`, a TLS handshake presenting the
        client certificate; with `oauth2`, a token fetched."""
        resolver = GuardedResolver(self._policy)
        lines: list[ConnectionCheck] = []
        try:
            for trigger in sorted(triggers, key=lambda t: t.name):
                url = str(trigger.options.get("url", ""))
                line = await _check_receiver(resolver, url, trigger.name)
                lines.append(line)
                parsed = WebhookOptions.parse(trigger.options)[0]
                if parsed is None:
                    continue
                where = f"{url}  [trigger {trigger.name}]"
                if line.ok and parsed.tls is not None:
                    lines.append(await self._check_tls(parsed, where))
                if parsed.oauth2 is not None:
                    lines.append(await self._check_token(parsed.oauth2, trigger.name))
            return lines
        finally:
            await resolver.close()

    async def _check_tls(self, options: WebhookOptions, where: str) -> ConnectionCheck:
        assert options.tls is not None
        host, port = options.url.host or "", options.url.port or 443
        try:
            context = await self._tls.context(options.tls)
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context, server_hostname=host),
                CONNECT_CHECK,
            )
        except TlsFileError as exc:
            return ConnectionCheck(False, f"tls     {where}: {exc}")
        except ssl.SSLError as exc:
            return ConnectionCheck(False, f"tls     {where}: handshake failed: {_reason(exc)}")
        except (OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else _reason(exc)
            return ConnectionCheck(False, f"tls     {where}: handshake failed: {reason}")
        writer.close()
        offered = (
            "client certificate offered (the receiver may still refuse it after the handshake)"
            if options.tls.client_cert is not None
            else "receiver's certificate accepted"
        )
        return ConnectionCheck(True, f"tls     {where}: handshake done, {offered}")

    async def _check_token(self, oauth: OAuth2Options, trigger: str) -> ConnectionCheck:
        where = f"{mask_url(oauth.token_url)}  [trigger {trigger}]"
        try:
            token = await self._tokens.token(oauth)
        except TokenError as exc:
            return ConnectionCheck(False, f"oauth2  {where}: {exc.reason}")
        if token.expires_at is None:
            lasts = "no expires_in: kept until a receiver answers 401"
        else:
            left = max(0, round(token.expires_at - time.monotonic()))
            lasts = f"used for {format_duration(left)}"
        return ConnectionCheck(True, f"oauth2  {where}: token issued ({lasts})")

    async def close(self) -> None:
        await self._tokens.close()
        sessions, self._sessions = self._sessions, None
        if sessions is not None:
            await sessions.close()

    def _guarded_sessions(self) -> GuardedSessions:
        if self._sessions is None:
            self._sessions = GuardedSessions(self._policy)
        return self._sessions

    def _policy(self) -> AddressPolicy:
        """The policy of the current `[daemon]`, built again only when a reload replaced it."""
        daemon = self._context.config().daemon
        if self._policy_of is None or self._policy_of[0] is not daemon:
            self._policy_of = (daemon, AddressPolicy.from_daemon(daemon))
        return self._policy_of[1]

    def _headers(
        self, delivery: Delivery, options: WebhookOptions, timestamp: int
    ) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        headers["Content-Type"] = delivery.content_type
        headers["User-Agent"] = f"postbackd/{self._context.version}"
        headers["webhook-id"] = delivery.id
        headers["webhook-timestamp"] = str(timestamp)
        if options.secrets:
            headers["webhook-signature"] = signature_header(
                options.secrets, delivery.id, timestamp, delivery.body
            )
        for name, value in options.headers:
            headers[name] = value
        return headers


def _mask_sent(headers: Mapping[str, str]) -> dict[str, str]:
    """`mask_headers` for the headers of every request: each header name is judged once."""
    masked: dict[str, str] = {}
    for name, value in headers.items():
        sensitive = _SENSITIVE.get(name)
        if sensitive is None:
            sensitive = _judge_name(name)
        shown = MASK if sensitive else value
        masked[name] = f"{masked[name]}, {shown}" if name in masked else shown
    return masked


_SENSITIVE: dict[str, bool] = {}  # header name → whether its value is masked in the log


def _judge_name(name: str) -> bool:
    if len(_SENSITIVE) >= PREPARED_LIMIT:
        _SENSITIVE.clear()
    sensitive = _SENSITIVE[name] = is_sensitive(name)
    return sensitive


def _destination(options: Mapping[str, Any]) -> str:
    try:
        url = URL(str(options.get("url", "")))
    except ValueError:
        return str(options.get("url", ""))
    host = url.host or ""
    host = f"[{host}]" if ":" in host else host.lower()
    return f"{url.scheme}://{host}:{url.port}"


def _judge(
    answer: aiohttp.ClientResponse, url: URL, request: dict[str, Any], response: dict[str, Any]
) -> Outcome:
    """What an HTTP answer means for the delivery: 2xx done, 410 dead, anything else retried."""
    status = answer.status
    shown_url = request["url"]  # masked once per trigger options
    log: dict[str, Any] = {"status": status, "request": request, "response": response}
    if 200 <= status < 300:
        return Outcome.ok(f"HTTP {status} from {shown_url}", **log)
    if status == 410:
        return Outcome.fail(
            f"410 Gone: the receiver says this endpoint is gone ({shown_url}); "
            "fix the trigger's url or remove the trigger",
            **log,
        )
    if 300 <= status < 400:
        target = _location(url, answer.headers.get("Location"))
        return Outcome.retry(
            f"HTTP {status} from {shown_url}: redirects are not followed (to {target}); "
            "if the receiver moved, update the trigger's url",
            **log,
        )
    after = _retry_after(answer.headers.get("Retry-After")) if status in (429, 503) else None
    return Outcome.retry(f"HTTP {status} from {shown_url}", after=after, **log)


def _location(url: URL, location: str | None) -> str:
    """Where a redirect points, absolute and masked, for the message."""
    if not location:
        return "no Location given"
    try:
        return mask_url(url.join(URL(location)))
    except ValueError:
        return repr(location)


def _explain(exc: BaseException, options: WebhookOptions) -> tuple[str, bool]:
    """A readable message for a failed exchange, and whether the failure is permanent."""
    url, where = mask_url(options.url), _hostport(options.url)
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
        exc.os_error, DestinationRefused
    ):
        exc = exc.os_error
    if isinstance(exc, DestinationRefused):
        return str(exc), True
    if isinstance(exc, aiohttp.ClientConnectorDNSError | socket.gaierror):
        cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        return f"cannot resolve {options.url.host}: {_reason(cause)}", False
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return (
            f"timed out after {format_duration(options.connect_timeout)} connecting to {where}",
            False,
        )
    if isinstance(exc, TimeoutError):
        return f"timed out after {format_duration(options.timeout)} waiting for {url}", False
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return f"cannot connect to the proxy {exc.host}:{exc.port}: {_reason(exc.os_error)}", False
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {where} not accepted: {exc.certificate_error}", False
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return f"connection refused by {exc.host}:{exc.port}", False
        return f"cannot connect to {exc.host}:{exc.port}: {_reason(exc.os_error)}", False
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return f"the proxy answered {exc.status} {exc.message} for {url}", False
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid url {url}: {exc.description}", True
    reset = isinstance(exc, aiohttp.ClientOSError) and exc.errno == errno.ECONNRESET
    if isinstance(exc, aiohttp.ServerDisconnectedError) or reset:
        # the same refusal comes as either, depending on when the receiver's close lands
        message = f"{where} {'reset' if reset else 'closed'} the connection before answering"
        if options.url.scheme == "https" and (options.tls is None or not options.tls.client_cert):
            # TLS 1.3 sends "certificate required" after the handshake, and the alert does not
            # reach aiohttp: the likeliest cause is said, since no other is seen
            message += (
                " (a receiver that requires a client certificate does that: give one in "
                "[trigger.options.tls] client_cert)"
            )
        return message, False
    return f"request to {url} failed: {_reason(exc)}", False


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` asks for: delay-seconds or an HTTP date; None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # "²".isdigit() too, and float("²") raises
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


async def _excerpt(answer: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The first `EXCERPT_BYTES` of the body, and whether there was more (the rest is not read)."""
    if answer.content_length is not None and answer.content_length <= EXCERPT_BYTES:
        try:
            return await answer.read(), False  # the common short answer: one read
        except (aiohttp.ClientError, TimeoutError):
            return b"", True
    data = bytearray()
    try:
        while len(data) < EXCERPT_BYTES:
            chunk = await answer.content.read(EXCERPT_BYTES - len(data))
            if not chunk:
                return bytes(data), False
            data += chunk
        return bytes(data), bool(await answer.content.read(1))
    except (aiohttp.ClientError, TimeoutError):
        return bytes(data), True


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _flat(headers: Mapping[str, str]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for name, value in headers.items():
        flat[name] = f"{flat[name]}, {value}" if name in flat else value
    return flat


def _hostport(url: URL) -> str:
    host = url.host or ""
    return f"[{host}]:{url.port}" if ":" in host else f"{host}:{url.port}"


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


async def _check_receiver(
    resolver: GuardedResolver, url_text: str, trigger: str
) -> ConnectionCheck:
    url = URL(url_text)
    host, port = url.host or "", url.port or (443 if url.scheme == "https" else 80)
    where = f"{url_text}  [trigger {trigger}]"
    try:
        await resolver.vet(host, port)
    except DestinationRefused as exc:
        return ConnectionCheck(False, f"ssrf    {where}: {exc}")
    except OSError as exc:
        return ConnectionCheck(False, f"dns     {where}: cannot resolve {host}: {exc}")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_CHECK)
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return ConnectionCheck(False, f"tcp     {where}: cannot connect to {host}:{port}: {reason}")
    writer.close()
    return ConnectionCheck(True, f"tcp     {where}: connected to {host}:{port}")
