"""The one outgoing HTTP client of a process (aiohttp), guarded against SSRF and traced.

Everything the service sends to the outside world over HTTP (today: webhooks) goes through
:class:`OutboundClient`: one connection pool per process, created lazily inside the running
event loop and closed by the lifespan (or the worker) on shutdown.

Server-side request forgery: a target URL is chosen by a user, so by default the client
refuses every address that is not globally routable (loopback, private ranges, link-local —
which includes cloud metadata endpoints at 169.254.169.254 — multicast, reserved). The check
is made on the addresses the connection will actually use (the resolver below), not on the
name, so a DNS name that resolves to 10.0.0.5 is refused as surely as the literal; redirects
are never followed. A URL's host is also checked before any connection (``check_url``, at
creation and again at delivery): read as the client reads it and as a resolver would
(``0x7f000001``, ``127.1``, ``0177.0.0.1``, IPv6 forms carrying an IPv4 address), with local
names (``localhost.``, ``*.localhost``, ``*.internal``, one-label names) refused too; one
classification, :func:`address_allowed`, decides for literals and resolved addresses alike
(decision 0098). ``allow_private_targets`` lifts this for development and tests.

Tracing: when tracing is on, every request gets an OpenTelemetry client span (the aiohttp
instrumentation's trace config) and carries ``traceparent``, as a child of the current span
(a job's span, for webhooks).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


class OutboundRefused(Exception):
    """The target is not allowed (not a public address, or a scheme we don't speak)."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (and a gateway or stack may reach): mapped,
    IPv4-compatible, 6to4, Teredo (server and client) and NAT64."""
    found = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip.packed[:12] == bytes(12) or any(ip in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(ip.packed[12:]))
    return found


def _public(ip: IPAddress) -> bool:
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return all(_public(inner) for inner in _embedded_ipv4(ip))
    return True


def address_allowed(address: str, *, allow_private: bool) -> bool:
    """Whether the client may connect to ``address`` (a literal): the one classification,
    used for resolved addresses at delivery and for literal hosts at creation and delivery."""
    if allow_private:
        return True
    return _public(ipaddress.ip_address(address.split("%", 1)[0]))  # drop an IPv6 zone id


def _ipv4_number(part: str) -> int | None:
    """One dotted part as inet_aton (and the WHATWG URL parser) reads it: decimal, octal
    with a leading 0, hexadecimal with 0x; None if it is not a number."""
    digits, radix = part, 10
    if part[:2].lower() == "0x":
        digits, radix = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        digits, radix = part[1:], 8
    if digits == "":
        return 0 if radix == 16 else None
    allowed = "0123456789abcdef"[:radix]
    if not all(c in allowed for c in digits.lower()):
        return None
    return int(digits, radix)


def _ipv4_form(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a resolver reads ``host`` as (``127.1``, ``0x7f000001``,
    ``2130706433``, ``0177.0.0.1``, ``0``...: libc's inet_aton forms, which getaddrinfo
    accepts before any DNS lookup); None for a name. OutboundRefused for a host that ends
    in a number but is no address (browsers refuse it; a resolver's reading is unclear)."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing dot: "127.0.0.1." is 127.0.0.1
    if _ipv4_number(parts[-1]) is None:
        return None  # a name (its last label is not a number)
    numbers = [_ipv4_number(part) for part in parts]
    if len(parts) > 4 or any(n is None for n in numbers):
        raise OutboundRefused("the URL's host is neither a name nor a valid address")
    *head, last = [n for n in numbers if n is not None]
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(parts)):
        raise OutboundRefused("the URL's host is neither a name nor a valid address")
    value = last
    for index, n in enumerate(head):
        value += n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


# names that never leave the machine or the local network: RFC 6761 (.localhost), RFC 6762
# (.local), RFC 8375 (home.arpa), ICANN's private-use .internal, /etc/hosts conventions
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_LOCAL_SUFFIXES = (".localhost", ".local", ".localdomain", ".internal", ".home.arpa")
_NAME = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


def host_address(host: str) -> IPAddress | None:
    """The literal address ``host`` (a URL's host, as the client sends it) stands for, or
    None for a DNS name; OutboundRefused for a host that is neither."""
    if ":" in host:  # only an IPv6 literal has a colon
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise OutboundRefused("the URL's host is not a valid IPv6 address") from None
    address = _ipv4_form(host)
    if address is not None:
        return address
    labels = host.rstrip(".").split(".")
    if host.endswith("..") or not all(_NAME.match(label) for label in labels):
        raise OutboundRefused("the URL's host is not a valid DNS name")
    return None


def name_is_local(host: str) -> bool:
    """A DNS name that names this machine or a private network, whatever it resolves to now
    (one label is completed by the resolver's search domains: an internal host)."""
    name = host.lower().rstrip(".")
    return "." not in name or name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES)


class GuardedResolver(AbstractResolver):
    """Resolves through aiohttp's default resolver, then refuses non-public addresses."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not address_allowed(result["host"], allow_private=self._allow_private):
                raise OutboundRefused(f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def check_url(url: str, *, allow_private: bool, allow_http: bool) -> None:
    """Refuse a URL the client would never call (scheme, credentials, a host that is or
    names a non-public address). The host is read as the client reads it (yarl, which
    aiohttp uses: IDNA, full-width digits...) and then as a resolver would (inet_aton
    forms), so ``0x7f000001`` is refused here, not only at delivery."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when not a number or past 65535
        host = URL(url).raw_host  # the host as aiohttp sends and resolves it
    except ValueError:  # "[127.0.0.1]", "[::1", a bad port...
        raise OutboundRefused("the URL is malformed") from None
    schemes = {"https", "http"} if allow_http else {"https"}
    if parts.scheme not in schemes:
        raise OutboundRefused(f"the URL must use {' or '.join(sorted(schemes))}")
    if parts.username or parts.password:
        raise OutboundRefused("the URL must not carry credentials")
    if not host:
        raise OutboundRefused("the URL has no host")
    if port == 0:  # in range for urlsplit and yarl, yet nothing can be called there
        raise OutboundRefused("the URL's port must be between 1 and 65535")
    # aiohttp does not resolve literal addresses, so the resolver never sees them: check here
    literal = host_address(host.lower())
    if allow_private:
        return
    if literal is not None:
        if not address_allowed(str(literal), allow_private=False):
            raise OutboundRefused("the URL points at a non-public address")
    elif name_is_local(host):
        raise OutboundRefused("the URL names this machine or a private network")


class OutboundClient:
    def __init__(
        self,
        *,
        user_agent: str,
        timeout_seconds: float,
        connect_timeout_seconds: float,
        max_connections: int,
        max_connections_per_host: int,
        allow_private_targets: bool,
        allow_http: bool,
    ) -> None:
        self.user_agent = user_agent
        self.timeout = aiohttp.ClientTimeout(
            total=timeout_seconds, sock_connect=connect_timeout_seconds
        )
        self.max_connections = max_connections
        self.max_connections_per_host = max_connections_per_host
        self.allow_private_targets = allow_private_targets
        self.allow_http = allow_http
        self.tracer_provider: TracerProvider | None = None  # set by instrument_resources
        self._session: aiohttp.ClientSession | None = None

    def check(self, url: str) -> None:
        check_url(url, allow_private=self.allow_private_targets, allow_http=self.allow_http)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trace_configs: list[aiohttp.TraceConfig] = []
            if self.tracer_provider is not None:
                from opentelemetry.instrumentation.aiohttp_client import create_trace_config

                trace_configs.append(create_trace_config(tracer_provider=self.tracer_provider))
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=self.max_connections_per_host,
                resolver=GuardedResolver(allow_private=self.allow_private_targets),
                ttl_dns_cache=60,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                trace_configs=trace_configs,
                headers={"User-Agent": self.user_agent},
                auto_decompress=False,
            )
        return self._session

    async def post(
        self,
        url: str,
        *,
        body: bytes,
        headers: dict[str, str],
        timeout: aiohttp.ClientTimeout | None = None,  # noqa: ASYNC109 - the client's own
    ) -> tuple[int, dict[str, Any]]:
        """POST ``body``; returns the status and the response headers (the body is dropped).

        ``timeout``: this call's, instead of the client's. Raises :class:`OutboundRefused`
        for a forbidden target and aiohttp's errors for network failures and timeouts.
        """
        self.check(url)
        # a refused resolution raises OutboundRefused straight through aiohttp (it wraps
        # only OSError from a resolver)
        async with self.session().post(
            url, data=body, headers=headers, allow_redirects=False, timeout=timeout or self.timeout
        ) as response:
            # read (at most) a little of the body so the connection can be reused
            await response.content.read(64 * 1024)
            return response.status, dict(response.headers)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
